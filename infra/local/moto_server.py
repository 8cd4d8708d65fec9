"""moto in server mode, with DynamoDB requests taken one at a time.

moto's DynamoDB backend is not safe under concurrent requests: a condition is
checked and the write made in separate steps, and a cancelled transaction
restores a copy of the whole table, undoing writes that other requests made
meanwhile. Real DynamoDB is atomic per item and per transaction; serialising
DynamoDB requests gives the same guarantees, so the concurrency tests test our
conditions rather than moto's races. Other services run concurrently as usual
(SQS long polls must not block, and Step Functions calls back into moto).

In front of moto sits the gate (gate/__init__.py): each call a function makes
is checked against its role in template.yaml, and AWS's limits and faults are
applied. The DynamoDB lock is the gate's, held around moto's work only. The
Step Functions interpreter signs its calls with moto's hard-coded key "ak",
which the gate takes for the template's state machine (gate/iam.py).

Usage: python moto_server.py [-H HOST] [-p PORT]   (same as moto_server)
"""

import argparse
import os

from gate import Gate
from moto.moto_server.threaded_moto_server import MotoRequestHandler
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


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
        Gate(app, port=args.port),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
