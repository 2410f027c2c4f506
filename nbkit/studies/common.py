"""What every study shares: one settings idiom, one cache, one store of loaded datasets.

**Settings.** Each study declares a frozen dataclass of its settings (a subclass of
:class:`StudySettings`, called ``Settings`` in its module) with a ``QUICK`` and a
``FULL`` instance; the notebooks, the apps and the experiment runner's grids all start
from those (a run's configuration is ``settings.config()`` plus the run's own keys).
``settings.replace(seed=3)`` gives a changed copy and names the valid fields when one
is misspelt.

**Cache.** A study function decorated with :func:`cached` computes once per distinct
argument list (settings compared by value) and then returns the stored result, so an
app whose slider comes back to a value only redraws. Results are shared: treat them as
read-only. :func:`clear_cache` forgets every study's results and every dataset.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections import OrderedDict
from typing import ClassVar

import torch

from .. import data as _data
from ..device import get as get_device

__all__ = ["StudySettings", "cached", "clear_cache", "key", "dataset", "for_mode"]

_STORES: list[OrderedDict] = []


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """Base of every study's settings: ``name`` ("quick", "full" or your own) is shown in
    figures and tables."""

    name: str = "quick"

    def replace(self, **changes):
        """A copy with ``changes`` applied; ValueError naming the valid fields when one is
        unknown."""
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise ValueError(f"{type(self).__module__.rsplit('.', 1)[-1]} settings have no "
                             f"{', '.join(map(repr, unknown))}; valid: {', '.join(sorted(fields))}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """The settings as a plain dict (deep copies of nested dicts and lists)."""
        return dataclasses.asdict(self)

    # Fields that say how to run or what an app offers, not what one run computes: left
    # out of run configurations.
    NOT_IN_CONFIG: ClassVar[tuple] = ("name", "threads", "cpu_threads")

    def config(self) -> dict:
        """The settings as the experiment runner stores them in a run's configuration:
        every field but those of :attr:`NOT_IN_CONFIG` (tuples as lists, as JSON has them)."""
        return {k: _jsonish(v) for k, v in self.as_dict().items()
                if k not in self.NOT_IN_CONFIG}

    @classmethod
    def from_config(cls, config: dict, base=None):
        """The settings a run configuration describes: ``base`` (default: the class's
        defaults) with every key of ``config`` that is a field (other keys, such as the
        run's pruner or rule, are the caller's)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        changes = {k: (tuple(v) if isinstance(getattr(base or cls(), k), tuple)
                       and isinstance(v, list) else v)
                   for k, v in config.items() if k in fields}
        return (base or cls()).replace(**changes)


def _jsonish(value):
    if isinstance(value, tuple):
        return [_jsonish(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonish(v) for k, v in value.items()}
    return value


def for_mode(modes: dict, mode: str, **changes):
    """``modes[mode]`` (a study's ``{"quick": QUICK, "full": FULL}``) with ``changes``."""
    if mode not in modes:
        raise ValueError(f"mode must be one of {sorted(modes)}, got {mode!r}")
    return modes[mode].replace(**changes) if changes else modes[mode]


def _plain(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__settings__": type(value).__qualname__, **dataclasses.asdict(value)}
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def key(*parts) -> str:
    """A canonical text for ``parts`` (settings by value, devices by name): equal values,
    equal keys."""
    return json.dumps(_plain(parts), sort_keys=True, default=str)


def cached(maxsize: int = 128, ignore: tuple = ("progress",)):
    """Decorator: compute ``fn(*args, **kwargs)`` once per distinct arguments and keep the
    last ``maxsize`` results. ``fn.is_cached(*args, **kwargs)`` says whether a call
    would return at once; ``fn.put(value, *args, **kwargs)`` stores a result computed
    elsewhere (step by step, say). A ``device=`` keyword is keyed by the device it
    resolves to; keywords in ``ignore`` (a progress bar, say) are not part of the key."""
    def deco(fn):
        store: OrderedDict = OrderedDict()
        _STORES.append(store)

        def _key(args, kwargs):
            kwargs = {k: v for k, v in kwargs.items() if k not in ignore}
            if "device" in kwargs:
                kwargs = {**kwargs, "device": get_device(kwargs["device"])}
            return key(fn.__module__, fn.__qualname__, args, kwargs)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            k = _key(args, kwargs)
            if k in store:
                store.move_to_end(k)
                return store[k]
            value = fn(*args, **kwargs)
            store[k] = value
            while len(store) > maxsize:
                store.popitem(last=False)
            return value

        def put(value, *args, **kwargs):
            store[_key(args, kwargs)] = value

        wrapper.is_cached = lambda *args, **kwargs: _key(args, kwargs) in store
        wrapper.put = put  # store a result computed elsewhere (step by step, say)
        return wrapper
    return deco


def clear_cache() -> None:
    """Forget every cached study result and every loaded dataset."""
    for store in _STORES:
        store.clear()


@cached(maxsize=8)
def dataset(name: str, device=None, image_size: int | None = None) -> _data.Dataset:
    """The dataset ``name`` on ``device`` (loaded once per process), its images
    average-pooled to ``image_size`` pixels when given (see
    :meth:`nbkit.data.Dataset.downsample`)."""
    ds = _data.load(name)
    if image_size:
        ds = ds.downsample(image_size)
    return ds.to(get_device(device))
