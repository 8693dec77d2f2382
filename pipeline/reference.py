"""Reference data kept as configuration: counties, the four lists, industries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml


class ReferenceConfigError(ValueError):
    """A reference file in config/ is missing or malformed."""


@dataclass(frozen=True)
class County:
    name: str
    code: str


@dataclass(frozen=True)
class Reference:
    city_name: str
    city_code: str
    counties: tuple[County, ...]
    lists: tuple[str, ...]
    industries: tuple[str, ...]

    @property
    def county_names(self) -> frozenset[str]:
        return frozenset(c.name for c in self.counties)

    @property
    def region_codes(self) -> frozenset[str]:
        return frozenset({self.city_code, *(c.code for c in self.counties)})

    def order_for(self, by: str) -> tuple[str, ...]:
        """The configured order of a grouping's names (counties, lists, industries); () for the others."""
        if by == "county":
            return tuple(c.name for c in self.counties)
        if by == "list":
            return self.lists
        if by == "industry":
            return self.industries
        return ()

    def sort_key(self, by: str) -> Callable[[str], tuple[int, int, str]]:
        """A sort key putting configured names in their configured order, any others after, by name."""
        rank = {name: i for i, name in enumerate(self.order_for(by))}
        return lambda name: (0, rank[name], "") if name in rank else (1, 0, name)


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ReferenceConfigError(f"配置文件不存在：{path}") from exc
    except yaml.YAMLError as exc:
        raise ReferenceConfigError(f"配置文件格式错误：{path}：{exc}") from exc
    if not isinstance(data, dict):
        raise ReferenceConfigError(f"配置文件格式错误：{path}")
    return data


def load_reference(config_dir: Path) -> Reference:
    counties_doc = _read(config_dir / "counties.yaml")
    try:
        city = counties_doc["city"]
        counties = tuple(County(name=str(c["name"]), code=str(c["code"])) for c in counties_doc["counties"])
    except (KeyError, TypeError) as exc:
        raise ReferenceConfigError(f"配置文件 {config_dir / 'counties.yaml'} 缺少字段：{exc}") from exc
    lists = tuple(str(x) for x in _read(config_dir / "lists.yaml").get("lists", []))
    industries = tuple(str(x) for x in _read(config_dir / "industries.yaml").get("industries", []))
    if not counties or not lists:
        raise ReferenceConfigError(f"{config_dir} 中县市区或清单为空")
    return Reference(
        city_name=str(city["name"]), city_code=str(city["code"]), counties=counties, lists=lists, industries=industries
    )
