"""moto in server mode, with DynamoDB requests taken one at a time.

moto's DynamoDB backend is not safe under concurrent requests: a condition is
checked and the write made in separate steps, and a cancelled transaction
restores a copy of the whole table, undoing writes that other requests made
meanwhile. Real DynamoDB is atomic per item and per transaction; serialising
DynamoDB requests gives the same guarantees, so the concurrency tests test our
conditions rather than moto's races. Other services run concurrently as usual
(SQS long polls must not block, and Step Functions calls back into moto).

Usage: python moto_server.py [-H HOST] [-p PORT]   (same as moto_server)
"""

import argparse
import os
import threading

from moto.moto_server.threaded_moto_server import MotoRequestHandler
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

DYNAMODB_TARGET_PREFIX = "DynamoDB_"


class SerialisedDynamoDB:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(DYNAMODB_TARGET_PREFIX):
            return self.app(environ, start_response)
        with self.lock:
            # Materialise the body while holding the lock: the work happens here.
            return list(self.app(environ, start_response))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)))
    args = parser.parse_args()
    # The Step Functions interpreter reaches SQS and DynamoDB through this port.
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        SerialisedDynamoDB(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
