"""The production entry point: gunicorn builds the app from the environment alone; its
gevent workers switch to a new model version while they serve, store every prediction
in the real Cassandra node through the driver's gevent connections, ask TF Serving
(the stand-in, serving the real model) over REST, and spread keep-alive connections
evenly between them."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from serving_standin.server import TFServingStandIn
from tests.support.gunicorn import gunicorn
from tests.support.images import encode
from tests.support.models import reference_outputs
from tests.support.procfs import children, established_connections
from tests.support.python import run_python


def predict(url: str, image, name: str) -> dict:
    response = requests.post(
        url + "/api/v1/predictions", files={"file": (name, encode(image))}, timeout=30
    )
    assert response.status_code == 201, response.text
    return response.json()["predictions"][0]


def test_gunicorn_serves_the_app_and_swaps_the_model_while_serving(
    exported_model_dir, mnist_test_set, tmp_path
):
    # A private copy of the model base dir, so that a new version can be added.
    model_dir = tmp_path / "models"
    shutil.copytree(exported_model_dir, model_dir)
    env = {
        "MODEL_DIR": str(model_dir),
        "MODEL_POLL_SECONDS": "0.5",
        "SQLITE_PATH": str(tmp_path / "predictions.sqlite3"),
    }
    images, _ = mnist_test_set
    with gunicorn(env) as (url, _):
        # Several requests reach both workers; each opened its own store and model.
        versions = {
            predict(url, images[index], f"{index}.png")["model_version"] for index in range(6)
        }
        assert versions == {"1"}
        history = requests.get(url + "/api/v1/predictions", params={"limit": 10}, timeout=10)
        assert len(history.json()["predictions"]) == 6

        # A new version appears as the export writes it: complete, renamed into place.
        shutil.copytree(model_dir / "1", model_dir / ".incoming-2")
        (model_dir / ".incoming-2").rename(model_dir / "2")
        # Both workers load it off their event loop while requests go on being answered.
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while seen[-8:] != ["2"] * 8 and time.monotonic() < deadline:
            seen.append(predict(url, images[len(seen) % 100], "x.png")["model_version"])
        assert seen[-8:] == ["2"] * 8, seen


def test_gunicorn_stores_concurrent_predictions_in_cassandra(
    exported_model_dir, mnist_test_set, cassandra_node, cassandra_admin, tmp_path
):
    keyspace = f"test_gunicorn_{uuid.uuid4().hex[:12]}"
    env = {
        "MODEL_DIR": str(exported_model_dir),
        "CASSANDRA_HOSTS": cassandra_node,
        "CASSANDRA_KEYSPACE": keyspace,
    }
    images, _ = mnist_test_set
    try:
        with gunicorn(env) as (url, _), ThreadPoolExecutor(16) as clients:
            # Concurrent requests share model calls and Cassandra writes inside each worker.
            answers = list(
                clients.map(lambda index: predict(url, images[index], f"{index}.png"), range(48))
            )
            for answer in answers[:4]:
                fetched = requests.get(f"{url}/api/v1/predictions/{answer['id']}", timeout=10)
                assert fetched.json()["digit"] == answer["digit"]
        stored = cassandra_admin.execute(f"SELECT id FROM {keyspace}.predictions")
        assert {str(row.id) for row in stored} == {answer["id"] for answer in answers}
    finally:
        cassandra_admin.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


def test_gunicorn_asks_tf_serving_over_rest(exported_model_dir, mnist_test_set, tmp_path):
    images, _ = mnist_test_set
    # MNIST digits pass preprocessing unchanged, so TF Serving must answer as the model does.
    _, expected_digits = reference_outputs(exported_model_dir / "1", images[:24])
    with TFServingStandIn(exported_model_dir) as serving:
        env = {"SERVING_URL": serving.url, "SQLITE_PATH": str(tmp_path / "p.sqlite3")}
        with gunicorn(env) as (url, _), ThreadPoolExecutor(8) as clients:
            answers = list(
                clients.map(lambda index: predict(url, images[index], f"{index}.png"), range(24))
            )
            assert [answer["digit"] for answer in answers] == expected_digits.tolist()
            assert {answer["model_version"] for answer in answers} == {"1"}
            # TF Serving failing persistently: a clear 503 the client may retry.
            serving.fail_next_predictions(100, status=503)
            failed = requests.post(
                url + "/api/v1/predictions",
                files={"file": ("x.png", encode(images[0]))},
                timeout=30,
            )
            assert failed.status_code == 503
            assert failed.headers["Retry-After"]
            assert failed.json()["error"]["code"] == "model_unavailable"


def test_gunicorn_workers_even_out_keep_alive_connections(exported_model_dir, tmp_path):
    env = {"MODEL_DIR": str(exported_model_dir), "SQLITE_PATH": str(tmp_path / "p.sqlite3")}
    clients = [KeepAliveClient() for _ in range(8)]
    with gunicorn(env) as (url, master):
        try:
            port = int(url.rpartition(":")[2])
            workers = children(master)
            assert len(workers) == 2, workers
            stopped = workers[0]
            # One worker cannot accept while the clients connect: all land on the other
            # (which already begins to hand some back: the stopped one is alive, and idle).
            os.kill(stopped, signal.SIGSTOP)
            try:
                for client in clients:
                    assert client.get(port, "/healthz") == 200
            finally:
                os.kill(stopped, signal.SIGCONT)
            connected = sum(client.connected for client in clients)
            assert connected > len(clients) // 2 + 1
            assert established_connections(port, workers) == [0, connected]

            # Requests go on over the same connections; the crowded worker closes some
            # after answering, and their clients reconnect, until the split is even.
            deadline = time.monotonic() + 60
            split = [0, connected]
            while time.monotonic() < deadline:
                connects = sum(client.connects for client in clients)
                assert all(client.get(port, "/healthz") == 200 for client in clients)
                settled = all(client.connected for client in clients) and connects == sum(
                    client.connects for client in clients
                )
                split = established_connections(port, workers)
                # A connection the worker closed after its last answer still looks open
                # to its client until the next request: count it as not settled yet.
                if settled and sum(split) == len(clients) and abs(split[0] - split[1]) <= 1:
                    break
            assert abs(split[0] - split[1]) <= 1, split
            assert sum(split) == len(clients)
            # Even now, no connection is closed any more, however long the clients go on.
            connects = sum(client.connects for client in clients)
            for _ in range(20):
                assert all(client.get(port, "/healthz") == 200 for client in clients)
            assert sum(client.connects for client in clients) == connects
            assert established_connections(port, workers) == split
        finally:
            # Before gunicorn stops: it waits for open connections to close.
            for client in clients:
                client.close()


class KeepAliveClient:
    """One HTTP/1.1 client that keeps its connection until the server closes it."""

    def __init__(self) -> None:
        self._connection: http.client.HTTPConnection | None = None
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._connection is not None

    def get(self, port: int, path: str) -> int:
        if self._connection is None:
            self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            self._connection.connect()
            self.connects += 1
        self._connection.request("GET", path)
        response = self._connection.getresponse()
        response.read()
        if response.will_close:
            self.close()
        return response.status

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def test_loading_the_gunicorn_config_imports_nothing_gevent_must_patch_first():
    script = (
        "import sys; before = set(sys.modules); import gateway.server.gunicorn_conf; "
        "print(sorted(m for m in ('ssl', 'socket', 'threading', 'flask', 'requests', "
        "'cassandra', 'tensorflow') if m in sys.modules and m not in before))"
    )
    assert run_python(script).strip() == "[]"
