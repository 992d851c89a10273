"""The price table model calls are priced with: genai-prices' bundled table, plus the file `LLM_GATEWAY_PRICES`
names, if any.

The file is in genai-prices' own data format, JSON (`.json`) or YAML (any other name): one provider, as in its
`prices/providers/*.yml`, or a list of them, as its `data.json`. A provider the table already has keeps its entry;
the file's models go ahead of its own (the first model whose `match` fits prices a call, so they override) and any
other field the file gives replaces the table's (its `name` and `api_pattern` may be left out). A provider the table
does not have is added, e.g. one whose `id` is the host of an OpenAI-compatible server the gateway has no name for.

The file is read once, at startup. `check_price_file` reads it in `serve` before anything starts (a bad file
stops it, with a message naming the file and the problem); the telemetry process reads it again for its table.
The table is never refreshed from the network: a figure can always be traced to the installed genai-prices and
the file.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PRICES = "LLM_GATEWAY_PRICES"

log = logging.getLogger("llm_gateway.telemetry")


class PriceFileError(ValueError):
    """The price file cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class PriceTable:
    """genai-prices' providers (a `DataSnapshot`), with where their prices came from."""

    snapshot: Any  # genai_prices.data_snapshot.DataSnapshot
    version: str  # "genai-prices 0.2.3"
    file: str | None = None
    file_models: frozenset[int] = frozenset()  # id() of each model the file gave

    def source(self, model: object) -> str:
        """`llm_gateway.cost.price_source` for a price taken from `model` (a genai-prices ModelInfo)."""
        return f"{self.version} + {self.file}" if id(model) in self.file_models else self.version


@functools.cache
def bundled_table() -> PriceTable:
    import genai_prices
    from genai_prices.data_snapshot import get_snapshot

    return PriceTable(get_snapshot(), f"genai-prices {genai_prices.__version__}")


def price_table(env: Mapping[str, str]) -> PriceTable:
    """The bundled table, with `LLM_GATEWAY_PRICES` merged in when it is set (raises PriceFileError)."""
    path = env.get(ENV_PRICES, "").strip()
    return _table_with(path) if path else bundled_table()


def usable_price_table(env: Mapping[str, str]) -> PriceTable:
    """`price_table`, or the bundled table with a warning where a bad file was not refused at startup (the demo)."""
    try:
        return price_table(env)
    except PriceFileError as exc:
        log.warning("llm-gateway: %s; costs come from the bundled table", exc)
        return bundled_table()


def check_price_file(env: Mapping[str, str]) -> None:
    """Read `LLM_GATEWAY_PRICES` as the telemetry process will; raises PriceFileError when it cannot be used.
    Without a file nothing is loaded: the relay's process has no use for the bundled table (25 MiB)."""
    if env.get(ENV_PRICES, "").strip():
        price_table(env)


@functools.cache  # serve checks, then the telemetry addons load: one read per process
def _table_with(path: str) -> PriceTable:
    from genai_prices.data_snapshot import DataSnapshot

    table = bundled_table()
    given = {provider.id: (provider, raw) for provider, raw in _read_providers(path, table.snapshot.providers)}
    bundled_ids = {provider.id for provider in table.snapshot.providers}
    merged = [provider for provider, _ in given.values() if provider.id not in bundled_ids]
    merged += [_overridden(p, *given[p.id]) if p.id in given else p for p in table.snapshot.providers]
    file_models = frozenset(id(model) for provider, _ in given.values() for model in provider.models)
    return PriceTable(DataSnapshot(providers=merged, from_auto_update=False), table.version, path, file_models)


def _overridden(bundled: Any, given: Any, raw: dict[str, Any]) -> Any:
    """`bundled` with the file's models ahead of its own, and the other fields the file gave."""
    fields = {f.name for f in dataclasses.fields(bundled)} - {"id", "models"}
    changes = {name: getattr(given, name) for name in raw if name in fields}
    return dataclasses.replace(bundled, **changes, models=[*given.models, *bundled.models])


def _read_providers(path: str, bundled: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
    """(provider, its raw mapping) for each provider in the file, checked as genai-prices checks its own data."""
    document = _parse(path)
    raws = [document] if isinstance(document, dict) else document
    if not isinstance(raws, list) or not raws or not all(isinstance(raw, dict) for raw in raws):
        raise _error(path, "expected a provider (a mapping with id, models) or a list of providers")
    known = {provider.id: provider for provider in bundled}
    completed = []
    for n, raw in enumerate(raws):
        if not isinstance(raw.get("id"), str) or not raw["id"]:
            raise _error(path, f"provider {n + 1} has no id")
        base = known.get(raw["id"])
        # An override may leave out what the table already says about its provider.
        defaults = {"name": base.name, "api_pattern": base.api_pattern} if base is not None else {}
        completed.append({**defaults, **raw})
    providers = _validated(path, completed)
    for provider in providers:
        for model in provider.models:
            _check_prices(path, provider.id, model)
    return list(zip(providers, raws, strict=True))


def _parse(path: str) -> Any:
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise _error(path, exc.strerror or str(exc)) from None
    if path.lower().endswith(".json"):
        import orjson

        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise _error(path, f"not JSON: {exc}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise _error(path, f"not YAML: {getattr(exc, 'problem', None) or exc}{at}") from None


def _validated(path: str, raws: list[dict[str, Any]]) -> list[Any]:
    """genai-prices' providers from the raw mappings; each provider, then each of its models, is read alone first,
    so that a problem is reported with the provider and model it is in."""
    try:
        from genai_prices.types import _providers_from_raw  # how genai-prices reads its own data.json
    except ImportError:
        raise _error(path, "this genai-prices version cannot read price files") from None
    for raw in raws:
        models = raw.get("models") or []
        _read_one(path, _providers_from_raw, f"provider {raw['id']!r}", {**raw, "models": []})
        for n, model in enumerate(models if isinstance(models, list) else []):
            name = model.get("id", n + 1) if isinstance(model, dict) else n + 1
            _read_one(path, _providers_from_raw, f"provider {raw['id']!r}, model {name!r}", {**raw, "models": [model]})
    return _providers_from_raw(raws)


def _read_one(path: str, read: Any, what: str, raw: dict[str, Any]) -> None:
    import pydantic

    try:
        read([raw])
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        # The location starts at the provider list and the one model in it: `0, models, 0, prices, input_mtok`.
        steps = list(first["loc"])
        steps = steps[3:] if steps[1:3] == ["models", 0] else steps[1:] if steps[:1] == [0] else steps
        where = ".".join(map(str, steps))
        raise _error(path, f"{what}: {where + ': ' if where else ''}{first['msg']}") from None
    except (ValueError, TypeError) as exc:
        raise _error(path, f"{what}: {exc}") from None


def _check_prices(path: str, provider_id: str, model: Any) -> None:
    """Price a zero usage with each of the model's prices, warnings as errors: an unknown price key or a price
    without the one it refines (a cache price with no input price) is found now, not on the first call."""
    from genai_prices import Usage
    from genai_prices.types import ModelPrice

    entries = model.prices if isinstance(model.prices, list) else [model.prices]
    for entry in entries:
        price = entry if isinstance(entry, ModelPrice) else entry.prices
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                price.calc_price(Usage())
            except (ValueError, UserWarning) as exc:
                raise _error(path, f"provider {provider_id!r}, model {model.id!r}: {exc}") from None


def _error(path: str, problem: str) -> PriceFileError:
    return PriceFileError(f"{ENV_PRICES}={path}: {problem}")
