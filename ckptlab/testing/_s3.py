"""A local S3 server for tests and benchmarks: moto's server mode on 127.0.0.1 (internal)."""

from __future__ import annotations

import collections
import logging
import threading
from types import TracebackType
from typing import Any

BUCKET = "ckptlab-test"
CREDENTIALS = {"key": "testing", "secret": "testing"}


class LocalS3Server:
    """moto's ``ThreadedMotoServer`` bound to 127.0.0.1 on a free port, counting requests.

    Examples
    --------
    >>> import ckptlab as ck
    >>> ckpt = ck.Checkpoint(w=ck.Variable([1.0, 2.0]))
    >>> with LocalS3Server() as server:
    ...     ck.storage.set_storage_options("s3://ckptlab-test", **server.storage_options)
    ...     ckpt.save("s3://ckptlab-test/run/ckpt", options=ck.WriteOptions(progress=False))
    ...     server.requests["PUT"] > 0
    's3://ckptlab-test/run/ckpt-1'
    True
    >>> ck.storage.set_storage_options("s3://ckptlab-test")  # forget the stopped server
    """

    def __init__(self, bucket: str = BUCKET) -> None:
        self.bucket = bucket
        self.requests: collections.Counter[str] = collections.Counter()
        """HTTP requests served, by method (``PUT``, ``GET``, ``HEAD``, ``DELETE``, ``POST``)."""
        self.log: list[tuple[str, str]] = []
        """``(method, path?query)`` of every request served, in order."""
        self._lock = threading.Lock()
        self._server: Any = None
        self.endpoint = ""

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options reaching this server."""
        return {"endpoint_url": self.endpoint, **CREDENTIALS}

    def start(self) -> LocalS3Server:
        """Start the server and create the bucket (with boto3: s3fs's mkdir fails on moto)."""
        import boto3
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        counter = self

        class _Quiet(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        class _Counting(ThreadedMotoServer):
            def _server_entry(self) -> None:
                app = DomainDispatcherApplication(create_backend_app)

                def counted(environ: dict[str, Any], start_response: Any) -> Any:
                    with counter._lock:
                        counter.requests[environ["REQUEST_METHOD"]] += 1
                        query = environ.get("QUERY_STRING", "")
                        counter.log.append(
                            (
                                environ["REQUEST_METHOD"],
                                environ["PATH_INFO"] + ("?" + query if query else ""),
                            )
                        )
                    return app(environ, start_response)

                self._server = make_server(
                    self._ip_address, self._port, counted, True, request_handler=_Quiet
                )
                self._server_ready_event.set()
                self._server.serve_forever()

        self._server = _Counting(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["key"],
            aws_secret_access_key=CREDENTIALS["secret"],
            region_name="us-east-1",
        ).create_bucket(Bucket=self.bucket)
        self.reset()
        return self

    def reset(self) -> None:
        """Forget the requests counted so far."""
        with self._lock:
            self.requests.clear()
            self.log.clear()

    @property
    def total(self) -> int:
        """Requests served since the last :meth:`reset`."""
        with self._lock:
            return sum(self.requests.values())

    def stop(self) -> None:
        """Stop the server."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> LocalS3Server:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
