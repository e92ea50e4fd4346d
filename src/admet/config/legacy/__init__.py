"""Compatibility with the original project: its config keys, its Ray Tune HPO files, and
``python -m admet.config migrate``, which rewrites its files in place.

Laid out as :mod:`admet.hpo.storage`: this module is the public API, re-exported from
private modules that hold one concept each:

* :mod:`._keys`: the original run-config schema mapped onto ours, :func:`apply_legacy`
  (sampling keys moved under ``joint_sampling``, comments kept) and
  :func:`translate_legacy` (renamed keys, aliases, keys with no effect, unimplemented
  sections), both applied by :func:`admet.config.load_config`;
* :mod:`._ray_tune_space` and :mod:`._ray_tune`: a Ray Tune HPO file converted into a
  study file of :mod:`admet.hpo`, its search space and the rest of the file
  (:func:`convert_ray_tune`, :func:`is_ray_tune_file`);
* :mod:`._yaml_layout`: a rewritten mapping written back in its file's layout (comments,
  indentation, null spellings);
* :mod:`._migrate`: ``python -m admet.config migrate`` (:func:`migrate_paths`,
  :func:`migrate_file`), built on the three above and on the loader.

The private modules import each other in that order only, never this module. The
migration's names are imported lazily (PEP 562): it validates what it writes with
:mod:`admet.config.loader`, which imports the key translation from here, and it needs
ruamel, which loading a config does not.

The original project's samplers stay in :mod:`admet.sampling.legacy` (they are samplers,
and the config layer imports no sampling code); its ``split_<i>/fold_<j>/`` data folders
are read by :mod:`admet.data.training` (``data.data_dir`` is a supported layout, not a
translated key).
"""

from __future__ import annotations

from admet._lazy import lazy_exports
from admet.config.legacy._keys import (
    LEGACY_PHASE_PROPORTIONS,
    UNIMPLEMENTED_SECTIONS,
    apply_legacy,
    translate_legacy,
)
from admet.config.legacy._ray_tune import convert_ray_tune, is_ray_tune_file
from admet.config.legacy._ray_tune_space import RAY_TUNE_TYPES

_MIGRATION = {
    name: "admet.config.legacy._migrate"
    for name in ("MigrationResult", "migrate_file", "migrate_paths", "study_file_for")
}

__all__ = [
    "LEGACY_PHASE_PROPORTIONS",
    "RAY_TUNE_TYPES",
    "UNIMPLEMENTED_SECTIONS",
    "apply_legacy",
    "convert_ray_tune",
    "is_ray_tune_file",
    "translate_legacy",
    *sorted(_MIGRATION),
]

__getattr__, __dir__ = lazy_exports(__name__, _MIGRATION)
