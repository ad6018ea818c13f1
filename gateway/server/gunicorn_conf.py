"""gunicorn's settings for the gateway, in one place.

Every way of serving the gateway with gunicorn (the image, ``make run``, the benchmark,
the tests) starts it as ``gunicorn --config python:gateway.server.gunicorn_conf
'gateway:create_app()'``. ``GUNICORN_CMD_ARGS`` and the command line override any setting
here; the chart sets the number of workers and the timeouts that way. gunicorn binds
``0.0.0.0:$PORT`` by itself.
"""

# gevent: the requests of a worker process run as greenlets on one OS thread. A request
# spends most of its life waiting (for its micro-batch, for the group commit, for
# Cassandra or TF Serving). With gunicorn's gthread workers each of those waits handed the
# GIL to another OS thread: about 60 context switches per request in the gateway's threads
# (perf), and the two cores went to the hand-offs; with gevent the benchmark's load got
# about 40% more req/s at a lower p99 on 2 cores (docs/design.md).
# gateway.server.gunicorn_worker adds an even spread of keep-alive connections across the workers.
worker_class = "gateway.server.gunicorn_worker.BalancedGeventWorker"

# Concurrent connections per worker process (greenlets are cheap; the micro-batcher and
# the group commit turn many waiting requests into few model calls and writes). Set well
# above the load a worker can serve, so that hundreds of slow or idle clients, each held
# for at most CLIENT_TIMEOUT_SECONDS, cannot take every connection a worker accepts.
worker_connections = 1000


def worker_exit(server, worker) -> None:
    """After a worker has finished its requests: close its store and model cleanly."""
    from gateway.services import close_services  # the app's modules, not the master's

    close_services(worker.wsgi)
    server.log.info("Worker %s closed its store and model", worker.pid)


# What to pass to gunicorn's --config to load this module (gunicorn ignores names it does
# not know, such as this one).
GUNICORN_CONFIG = f"python:{__name__}"
