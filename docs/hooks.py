"""MkDocs hook: the reference pages, generated from the code at every build.

So they cannot drift from it: the CLI from the Typer app (click introspection), the configs
from their pydantic models (type, default, description of every field), the metrics from
``lorafleet.serving.metrics``, the alert rules from ``deploy/prometheus/rules``. Each page is
added to the build as a generated file under ``reference/``; nothing is written to docs/.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

__all__ = ["on_files", "PAGES", "cli_commands", "cli_page", "model_page", "metrics_page", "alerts_page"]

ROOT = Path(__file__).resolve().parents[1]

# (page, title, the class to document, where to find it: a module or a package to search)
MODEL_PAGES = [
    ("reference/train-config.md", "Training config", "TrainConfig", "lorafleet.training.config",
     "The YAML file given to `platform train`. Relative paths are relative to the file; "
     "`--set key=value` overrides any field (dotted for nested sections, e.g. `--set peft.r=8`)."),
    ("reference/routes-file.md", "Routes file", "RoutesFile", "lorafleet.serving.routes",
     "`$LORAFLEET_HOME/routes.yaml`, the one place that decides which version gets which traffic. "
     "The gateway re-reads it within a second; an invalid edit is refused and the last good file stays."),
    ("reference/gateway-config.md", "Gateway config", "GatewayConfig", "lorafleet.serving.gateway",
     "How the gateway runs (`platform serve` builds it from its options and the settings)."),
    ("reference/settings.md", "Settings", "Settings", "lorafleet.core.settings",
     "Platform settings, read from `LORAFLEET_*` environment variables (the field name in upper case "
     "after the prefix: `home` is `LORAFLEET_HOME`)."),
]
PAGES = ["reference/cli.md", *[p[0] for p in MODEL_PAGES], "reference/metrics.md", "reference/alerts.md"]


# ---------------------------------------------------------------- CLI
def _app() -> Any:
    import typer

    from lorafleet.platform.cli import app

    return typer.main.get_command(app)


def cli_commands(group: Any = None, prefix: str = "platform") -> list[tuple[str, Any]]:
    """Every leaf command of the CLI as (full name, click command), in the app's order.

    Typer ships its own copy of click, so groups are told apart by what they do, not by class."""
    group = group if group is not None else _app()
    out = []
    ctx = group.context_class(group, info_name=prefix)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        full = f"{prefix} {name}"
        if hasattr(cmd, "list_commands"):
            out.extend(cli_commands(cmd, full))
        else:
            out.append((full, cmd))
    return out


def _anchor(text: str) -> str:
    return text.replace(" ", "-").lower()


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _param_row(p: Any) -> str:
    annotation = getattr(getattr(p, "type_descriptor", None), "annotation", None)
    type_name = _type_name(annotation) if annotation is not None else ""
    if p.param_type_name == "argument":
        names = f"`{p.name.rstrip('_').upper()}`"
        kind = f"argument ({type_name})" + ("" if p.required else ", optional")
    else:
        names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
        kind = "flag" if getattr(p, "is_flag", False) else type_name
    default = p.default
    if default is None or default == () or default == [] or (getattr(p, "is_flag", False) and default is False):
        shown = "required" if p.required else ""
    else:
        shown = f"`{default}`"
    return f"| {names} | {_cell(kind)} | {shown} | {_cell(getattr(p, 'help', None) or '')} |"


def cli_page() -> str:
    lines = ["# CLI reference", "",
             "Generated from the Typer app `lorafleet.platform.cli:app` at docs build time: every command "
             "and option the installed `platform` has. Bad input answers with one line naming the problem "
             "and exit code 2.", ""]
    commands = cli_commands()
    lines += ["| command | what it does |", "|---|---|"]
    for full, cmd in commands:
        short = " ".join((cmd.help or "").strip().split("\n\n")[0].split())
        lines.append(f"| [`{full}`](#{_anchor(full)}) | {_cell(short)} |")
    for full, cmd in commands:
        lines += ["", f"## {full}", ""]
        usage = " ".join(cmd.collect_usage_pieces(cmd.context_class(cmd, info_name=full)))
        lines += ["```", f"{full} {usage}", "```", "", inspect.cleandoc(cmd.help or ""), ""]
        params = [p for p in cmd.params if not getattr(p, "hidden", False) and p.name != "help"]
        if params:
            lines += ["| argument / option | kind | default | description |", "|---|---|---|---|"]
            lines += [_param_row(p) for p in params]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- pydantic models
def _find_class(name: str, where: str) -> type:
    """``where``: the module holding ``name``; when it moved, the modules of its package are searched."""
    try:
        mod = importlib.import_module(where)
    except ModuleNotFoundError:
        where = where.rsplit(".", 1)[0]
        mod = importlib.import_module(where)
    if hasattr(mod, name):
        return getattr(mod, name)
    if not hasattr(mod, "__path__"):
        where = where.rsplit(".", 1)[0]
        mod = importlib.import_module(where)
    for info in pkgutil.walk_packages(mod.__path__, where + "."):
        sub = importlib.import_module(info.name)
        cls = sub.__dict__.get(name)
        if isinstance(cls, type) and cls.__module__ == sub.__name__:
            return cls
    raise LookupError(f"docs: class {name} not found in {where}")


def _is_model(t: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(t, type) and issubclass(t, BaseModel)


def _type_name(t: Any) -> str:
    origin = get_origin(t)
    if origin is Literal:
        return " or ".join(json.dumps(a) for a in get_args(t))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(t))
    if origin in (list, tuple, set):
        return f"list of {_type_name(get_args(t)[0])}" if get_args(t) else "list"
    if origin is dict:
        k, v = get_args(t) or (str, Any)
        return f"map {_type_name(k)} to {_type_name(v)}"
    if t is type(None):
        return "null"
    if _is_model(t):
        return f"[{t.__name__}](#{t.__name__.lower()})"
    return getattr(t, "__name__", str(t).replace("typing.", ""))


def _nested_models(t: Any) -> list[type]:
    if _is_model(t):
        return [t]
    return [m for a in get_args(t) for m in _nested_models(a)]


def _default(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        value = field.default_factory()
        if _is_model(type(value)):
            return "(section defaults)"
        return f"`{json.dumps(value, default=str)}`"
    if field.default is PydanticUndefined:
        return "**required**"
    if field.default is None:
        return "`null`"
    return f"`{json.dumps(field.default, default=str)}`"


def _model_section(cls: type, env_prefix: str | None, seen: list[type]) -> list[str]:
    lines = [f"## {cls.__name__}", "", inspect.cleandoc(cls.__doc__ or ""), ""]
    head = "| field | type | default | description |"
    if env_prefix is not None:
        head = "| field | environment variable | type | default | description |"
    lines += [head, "|" + "---|" * head.count(" | ") + "---|"]
    nested = []
    for name, f in cls.model_fields.items():
        key = f.alias or name
        env = f"| `{env_prefix}{name.upper()}` " if env_prefix is not None else ""
        lines.append(f"| `{key}` {env}| {_cell(_type_name(f.annotation))} | {_default(f)} | "
                     f"{_cell(f.description or '')} |")
        nested += [m for m in _nested_models(f.annotation) if m not in seen and m not in nested]
    seen += nested
    for m in nested:
        lines += [""] + _model_section(m, None, seen)
    return lines


def model_page(title: str, cls: type, intro: str) -> str:
    env_prefix = None
    cfg = getattr(cls, "model_config", {})
    if "env_prefix" in cfg:
        env_prefix = cfg["env_prefix"]
    lines = [f"# {title}", "", intro, "",
             f"Generated from `{cls.__module__}.{cls.__name__}` at docs build time.", ""]
    lines += _model_section(cls, env_prefix, [cls])
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- metrics and alerts
def metric_list() -> list[dict[str, Any]]:
    """Every metric declared in lorafleet.serving.metrics: exposed name, type, labels, help, buckets."""
    from prometheus_client.metrics import MetricWrapperBase

    from lorafleet.serving import metrics as mod

    out = []
    for name in mod.__all__:
        cls = getattr(mod, name)
        if not isinstance(cls, type):
            continue
        try:
            holder = cls()  # each holder declares its metrics in a registry of its own
        except TypeError:
            continue
        for m in vars(holder).values():
            if not isinstance(m, MetricWrapperBase):
                continue
            exposed = m._name + ("_total" if m._type == "counter" else "")
            out.append({"name": exposed, "type": m._type, "labels": list(m._labelnames),
                        "help": m._documentation, "buckets": list(getattr(m, "_upper_bounds", []))[:-1],
                        "holder": cls.__name__})
    return out


def metrics_page() -> str:
    lines = ["# Metrics reference", "",
             "Generated from `lorafleet.serving.metrics` (the one module that declares metrics) at docs build "
             "time. Every series the gateway exports on `/metrics`; label values come from small fixed sets "
             "(routes, versions, variants `stable`/`canary`, tenants), never from request or user ids. A "
             "histogram `NAME` is exposed as `NAME_bucket`, `NAME_sum` and `NAME_count`.", "",
             "| metric | type | labels | description |", "|---|---|---|---|"]
    found = metric_list()
    for m in found:
        lines.append(f"| [`{m['name']}`](#{m['name']}) | {m['type']} | {', '.join(m['labels']) or '-'} | "
                     f"{_cell(m['help'])} |")
    for m in found:
        lines += ["", f"## {m['name']}", "", m["help"], "", f"- type: {m['type']}",
                  f"- labels: {', '.join(f'`{x}`' for x in m['labels']) or 'none'}"]
        if m["buckets"]:
            lines.append(f"- buckets: {', '.join(f'{b:g}' for b in m['buckets'])}")
    return "\n".join(lines) + "\n"


def alert_rules() -> list[dict[str, Any]]:
    import yaml

    rules = []
    for path in sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                rules.append(dict(rule, group=group.get("name"), file=path.name))
    return rules


def alerts_page() -> str:
    lines = ["# Alert rules reference", "",
             "Generated from `deploy/prometheus/rules/` at docs build time (the rules Prometheus loads; "
             "`promtool test rules` checks them in the test suite).", ""]
    for r in alert_rules():
        if "alert" in r:
            ann = r.get("annotations") or {}
            lines += [f"## {r['alert']}", "", ann.get("summary", ""), "",
                      f"- group: `{r['group']}` ({r['file']})", f"- for: `{r.get('for', '0s')}`",
                      f"- severity: `{(r.get('labels') or {}).get('severity', '-')}`", "",
                      "```promql", str(r["expr"]).strip(), "```", ""]
            if ann.get("description"):
                lines += [ann["description"], ""]
    records = [r for r in alert_rules() if "record" in r]
    if records:
        lines += ["## Recording rules", "", "| record | expression |", "|---|---|"]
        lines += [f"| `{r['record']}` | `{_cell(str(r['expr']).strip())}` |" for r in records]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the hook
def generated_pages() -> dict[str, str]:
    pages = {"reference/cli.md": cli_page(), "reference/metrics.md": metrics_page(),
             "reference/alerts.md": alerts_page()}
    for page, title, name, where, intro in MODEL_PAGES:
        pages[page] = model_page(title, _find_class(name, where), intro)
    return pages


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for page, content in generated_pages().items():
        files.append(File.generated(config, page, content=content))
    return files
