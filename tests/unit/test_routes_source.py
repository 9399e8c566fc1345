"""The routes document in each of its places: the home's file, one object in the registry's store
(compare-and-swap, so concurrent promotes from two homes both land), and a kubelet-style ConfigMap
folder, whose ``..data`` symlink swap the gateway's watcher follows and which refuses writes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from lorafleet.core.settings import Settings
from lorafleet.platform.control.routes_edit import edit_route, history
from lorafleet.registry.storage import LocalStorage
from lorafleet.serving.routes import Route
from lorafleet.serving.routes_source import FileRoutes, RoutesReadOnly, StoreRoutes, load_routes, open_routes
from lorafleet.serving.routes_watch import RoutesWatcher

pytestmark = pytest.mark.unit


def _set_stable(version: str):
    return lambda current: Route(stable=version) if current is None else current.model_copy(update={"stable": version})


def _concurrent_edits(sources) -> None:
    """Route r<i> set from source i, all at the same moment."""
    barrier = threading.Barrier(len(sources))

    def run(i: int, source) -> None:
        barrier.wait()
        edit_route(source, f"r{i}", _set_stable(f"a{i}@1"), actor=f"home{i}", reason="race", kind="full")

    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(sources)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)


def test_store_routes_two_homes_promote_at_once_and_both_land(tmp_path: Path) -> None:
    store = tmp_path / "store"  # the shared store; each "home" opens it on its own
    sources = [StoreRoutes(LocalStorage(store)) for _ in range(4)]
    _concurrent_edits(sources)
    routes = load_routes(sources[0]).routes
    assert {name: r.stable for name, r in routes.items()} == {f"r{i}": f"a{i}@1" for i in range(4)}
    assert sorted(e["route"] for e in history(sources[1])) == ["r0", "r1", "r2", "r3"]


def test_file_routes_concurrent_edits_both_land(tmp_path: Path) -> None:
    path = tmp_path / "home" / "routes.yaml"
    _concurrent_edits([FileRoutes(path), FileRoutes(path)])
    assert set(load_routes(path).routes) == {"r0", "r1"}
    assert len(history(path)) == 2


def test_open_routes_follows_the_setting(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert isinstance(open_routes(Settings(home=home)), FileRoutes)
    assert isinstance(open_routes(Settings(home=home, routes_source="registry")), StoreRoutes)
    other = open_routes(Settings(home=home, routes_source=str(tmp_path / "cm" / "routes.yaml")))
    assert isinstance(other, FileRoutes) and other.path == tmp_path / "cm" / "routes.yaml"
    with pytest.raises(Exception, match="LORAFLEET_ROUTES_SOURCE"):
        open_routes(Settings(home=home, routes_source="s3://bucket/routes.yaml"))


def test_store_routes_schemas_live_beside_the_document(tmp_path: Path) -> None:
    source = StoreRoutes(LocalStorage(tmp_path / "store"))
    source.put_schema("schemas/a.json", '{"type": "object"}')
    assert source.schema_text("schemas/a.json") == '{"type": "object"}'
    with pytest.raises(Exception, match="relative"):
        source.schema_key("../escape.json")


def _configmap(folder: Path, text: str, stamp: str) -> None:
    """What kubelet does: a new timestamped folder, then ``..data`` swapped to it in one rename."""
    data = folder / f"..{stamp}"
    data.mkdir(parents=True)
    (data / "routes.yaml").write_text(text)
    tmp = folder / "..data_tmp"
    tmp.symlink_to(data.name)
    os.replace(tmp, folder / "..data")
    if not (folder / "routes.yaml").is_symlink():
        (folder / "routes.yaml").symlink_to("..data/routes.yaml")


def test_a_configmap_update_reaches_the_watcher_and_writes_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "configmap"
    _configmap(folder, "routes:\n  r: {stable: a@1}\n", "2026_12_02_01")
    watcher = RoutesWatcher(FileRoutes(folder / "routes.yaml"))
    assert watcher.poll() and watcher.routes.routes["r"].stable == "a@1"
    stop = threading.Event()
    thread = threading.Thread(target=lambda: [watcher.poll() or stop.wait(0.25) for _ in iter(stop.is_set, True)],
                              daemon=True)
    thread.start()
    try:
        _configmap(folder, "routes:\n  r: {stable: a@2}\n", "2026_12_02_02")
        deadline = time.monotonic() + 2.0
        while watcher.routes.routes["r"].stable != "a@2" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watcher.routes.routes["r"].stable == "a@2", "the ..data swap did not reach the watcher in 2 s"
    finally:
        stop.set()
        thread.join(timeout=5)
    with pytest.raises(RoutesReadOnly, match="kubectl"):
        edit_route(folder / "routes.yaml", "r", _set_stable("a@3"), actor="me", reason="x", kind="full")


def test_the_watcher_follows_a_store_document_and_keeps_the_last_good(tmp_path: Path) -> None:
    source = StoreRoutes(LocalStorage(tmp_path / "store"))
    watcher = RoutesWatcher(source)
    edit_route(source, "r", _set_stable("a@1"), actor="me", reason="first", kind="full")
    assert watcher.poll() and watcher.routes.routes["r"].stable == "a@1"
    assert not watcher.poll()  # unchanged tag: nothing read
    source.update(lambda old: ("routes: [not, a, mapping]\n", {"route": "*", "kind": "apply"}))
    assert not watcher.poll() and watcher.routes.routes["r"].stable == "a@1" and watcher.last_error
    source.update(lambda old: ("routes:\n  r: {stable: a@2}\n", {"route": "*", "kind": "apply"}))
    assert watcher.poll() and watcher.routes.routes["r"].stable == "a@2"


def test_engines_listed_in_the_routes_document_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("engines: [http://10.0.0.1:8000, http://10.0.0.2:8000]\nroutes: {}\n")
    assert load_routes(path).engines == ["http://10.0.0.1:8000", "http://10.0.0.2:8000"]
    path.write_text("engines: [ftp://x]\nroutes: {}\n")
    with pytest.raises(Exception, match="ftp://x"):
        load_routes(path)
