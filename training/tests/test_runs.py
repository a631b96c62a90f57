import json
import multiprocessing

from purifyd_train.runs import update_json


def _update_many(path, worker: int) -> None:
    for i in range(25):
        update_json(path, f"{worker}-{i}", i)


def test_update_json_keeps_every_key_from_parallel_processes(tmp_path):
    path = tmp_path / "metrics.json"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_update_many, args=(path, w)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert all(w.exitcode == 0 for w in workers)
    assert json.loads(path.read_text()) == {f"{w}-{i}": i for w in range(4) for i in range(25)}
