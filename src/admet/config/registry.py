"""Registries of the parts people add: prediction heads (``model.ffn_type``), graph
aggregations (``model.aggregation``) and training batch samplers (``joint_sampling.sampler``).

What: a :class:`Registry` maps a config value to a :class:`Part`: its name, the aliases
old files and Ray Tune spaces use for it, the name of its Chemprop counterpart (or None:
Chemprop cannot express it) and the builder the model layer registered for it. Every
place that used to keep its own list reads the registry instead: config validation
(:func:`admet.config.load_config`, one-line :class:`~admet.errors.ConfigError` naming the
key and the allowed values), legacy aliases and the Ray Tune conversion
(:mod:`admet.config.legacy`), the Chemprop export (:mod:`admet.model.chemprop_export`) and
a study's ``choices: registered`` (:mod:`admet.hpo.spec`).

Why here: the layers run config -> data/sampling -> model -> hpo, and a config must be
validated without importing torch, so the names live in the config layer and the model
layer registers its classes into them (``@HEADS.register("branched")`` in
:mod:`admet.model.heads`). The built-in parts are declared at the bottom of this module so
that ``python -m admet.config validate`` knows them without loading the model; a part
registered with its metadata in a model-layer module (``@HEADS.register("mine",
aliases=("my_head",))``) declares itself there and is known once that module is imported
(every process that trains or tunes imports :mod:`admet.model`).

Chemprop's ``chemprop.utils.registry.ClassRegistry`` is a plain ``name -> class`` dict
whose aliases are indistinguishable from names. Ours differs because importing it pulls
in torch and Chemprop (the config layer must stay light), a legacy alias must map to one
canonical name that is written back into the config (``mlp`` -> ``regression``) rather
than being a second valid value, a part carries its Chemprop counterpart for the export,
and a name may be declared before the model layer binds its builder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from admet.errors import ConfigError

__all__ = ["AGGREGATIONS", "HEADS", "REGISTRIES", "SAMPLERS", "Part", "Registry", "sampler_name"]

T = TypeVar("T")
_UNSET: Any = object()


@dataclass
class Part:
    """One registered part.

    ``chemprop``: the name Chemprop's CLI and registries use for the same thing
    (``--aggregation mean``, ``PredictorRegistry["regression"]``), or None when Chemprop
    has no counterpart (the export then refuses it, naming the key). ``builder``: the
    class or function the model layer builds it with (None until registered).
    """

    name: str
    aliases: tuple[str, ...] = ()
    chemprop: str | None = None
    builder: Callable[..., Any] | None = None


class Registry:
    """Names of the parts one config key selects, with their aliases, Chemprop
    counterparts and builders.

    ``message`` is the one-line error for an unknown name; ``{key}``, ``{one_of}``
    (``a, b, c``), ``{either}`` (``a, b or c``) and ``{value}`` (the value's repr) are
    filled in.

    Example:
        >>> reg = Registry("model.widget", "{key} must be {either}, got {value}")
        >>> _ = reg.declare("plain", aliases=("old_plain",), chemprop="plain")
        >>> @reg.register("fancy")
        ... class Fancy: ...
        >>> reg.names(), reg.canonical("OLD_PLAIN"), reg.part("fancy").builder is Fancy
        (('plain', 'fancy'), 'plain', True)
        >>> reg.check("nope")
        Traceback (most recent call last):
        ...
        admet.errors.ConfigError: model.widget must be plain or fancy, got 'nope'
    """

    def __init__(self, key: str, message: str = "{key} must be one of {one_of}, got {value}") -> None:
        self.key = key
        self.message = message
        self._parts: dict[str, Part] = {}
        self._aliases: dict[str, str] = {}

    # -- declaring and registering ---------------------------------------------------------

    def declare(self, name: str, *, aliases: tuple[str, ...] = (), chemprop: str | None = None) -> Part:
        """Declare ``name`` (no builder yet); its aliases map to it. Refuses a name or alias
        that is taken."""
        if name in self._parts or name in self._aliases:
            raise ValueError(f"{self.key}: {name!r} is already registered")
        for alias in aliases:
            if alias in self._parts or alias in self._aliases:
                raise ValueError(f"{self.key}: alias {alias!r} is already registered")
        part = Part(name=name, aliases=tuple(aliases), chemprop=chemprop)
        self._parts[name] = part
        self._aliases.update({alias: name for alias in aliases})
        return part

    def register(
        self, name: str, *, aliases: tuple[str, ...] = (), chemprop: str | None = _UNSET
    ) -> Callable[[T], T]:
        """A decorator binding a class or function as ``name``'s builder.

        A name declared already (the built-ins, see the bottom of this module) keeps its
        declared aliases and Chemprop counterpart; a new name is declared with ``aliases``
        and ``chemprop`` (None when not given). The decorated object is returned unchanged.
        """

        def decorator(builder: T) -> T:
            part = self._parts.get(name)
            if part is None:
                part = self.declare(name, aliases=aliases, chemprop=None if chemprop is _UNSET else chemprop)
            elif aliases or chemprop is not _UNSET:
                raise ValueError(
                    f"{self.key}: {name!r} is declared already; its aliases and chemprop are fixed"
                )
            if part.builder is not None and part.builder is not builder:
                raise ValueError(f"{self.key}: {name!r} already has a builder ({part.builder!r})")
            part.builder = builder  # type: ignore[assignment]
            return builder

        return decorator

    def unregister(self, name: str) -> None:
        """Remove ``name`` and its aliases (tests that register a part of their own)."""
        part = self._parts.pop(name)
        for alias in part.aliases:
            self._aliases.pop(alias, None)

    # -- reading -----------------------------------------------------------------------

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order (aliases not included)."""
        return tuple(self._parts)

    def parts(self) -> Iterator[Part]:
        return iter(self._parts.values())

    def __contains__(self, name: object) -> bool:
        return name in self._parts

    def resolve(self, value: Any) -> Any:
        """An alias's name; any other value unchanged."""
        return self._aliases.get(value, value) if isinstance(value, str) else value

    def canonical(self, value: str) -> str:
        """``value`` lower-cased, an alias replaced by its name (unknown values unchanged
        but lower-cased, for :meth:`check` to report)."""
        return self.resolve(value.lower())

    def error(self, value: object) -> ConfigError:
        """The one-line error for an unknown ``value``."""
        names = self.names()
        either = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else ", ".join(names)
        return ConfigError(
            self.message.format(key=self.key, one_of=", ".join(names), either=either, value=repr(value))
        )

    def check(self, value: object) -> None:
        """Raise :meth:`error` unless ``value`` is a registered name."""
        if value not in self._parts:
            raise self.error(value)

    def part(self, name: str) -> Part:
        """The part registered as ``name`` (ConfigError naming the key otherwise)."""
        self.check(name)
        return self._parts[name]

    def builder(self, name: str) -> Callable[..., Any]:
        """``name``'s builder; ConfigError for an unknown name, LookupError for a name
        declared without one (its model-layer module is not imported)."""
        part = self.part(name)
        if part.builder is None:
            raise LookupError(f"{self.key}={name!r} is declared but no builder is registered for it")
        return part.builder


HEADS = Registry("model.ffn_type")
HEADS.declare("regression", aliases=("mlp",), chemprop="regression")
HEADS.declare("branched")
HEADS.declare("moe", aliases=("mixture_of_experts",))

AGGREGATIONS = Registry("model.aggregation", "{key} must be {either}, got {value}")
for _name in ("mean", "sum", "norm"):
    AGGREGATIONS.declare(_name, chemprop=_name)

# "shuffle": Chemprop's seeded shuffle (its only sampler); "joint": admet.sampling.JointSampler.
SAMPLERS = Registry("joint_sampling.sampler")
SAMPLERS.declare("shuffle", chemprop="shuffle")
SAMPLERS.declare("joint")

# config key -> its registry
REGISTRIES: dict[str, Registry] = {r.key: r for r in (HEADS, AGGREGATIONS, SAMPLERS)}


def sampler_name(cfg: Any) -> str:
    """The batch sampler a run config trains with: ``joint_sampling.sampler`` when set,
    else ``joint`` with ``joint_sampling.enabled`` and ``shuffle`` without."""
    js = cfg.joint_sampling
    return js.sampler or ("joint" if js.enabled else "shuffle")
