"""moto server as the tests run it: DynamoDB requests one at a time, as DynamoDB's own guarantees
require.

moto (5.2.5) serves requests on threads, and its DynamoDB backend is not safe under concurrent
requests: TransactWriteItems backs up every table it touches with a deep copy and, when one of
its conditions fails, puts that copy back, undoing whatever other requests wrote in between (a
committed claim, an executed action, a posted comment reappear in their old state, and the
pipeline then rightly acts on them again). Real DynamoDB serialises writes per item and never
rolls back another request's write. One lock around the DynamoDB handler restores that; SQS and
Secrets Manager stay concurrent (long polls must not block DynamoDB).

Usage: python tests/moto_server.py -H 127.0.0.1 -p PORT   (the arguments of moto_server)
"""

import sys
import threading

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_dynamodb = threading.Lock()
_call_action = DynamoHandler.call_action


def _serialised_call_action(self):
    with _dynamodb:
        return _call_action(self)


DynamoHandler.call_action = _serialised_call_action

if __name__ == "__main__":
    sys.exit(main())
