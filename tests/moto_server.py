"""moto server as the tests run it: DynamoDB requests one at a time, as DynamoDB's own guarantees
require.

moto (5.2.5) serves requests on threads, and its DynamoDB backend is not safe under concurrent
requests: TransactWriteItems backs up every table it touches with a deep copy and, when one of
its conditions fails, puts that copy back, undoing whatever other requests wrote in between (a
committed claim, an executed action, a posted comment reappear in their old state, and the
pipeline then rightly acts on them again). Real DynamoDB serialises writes per item and never
rolls back another request's write. One lock around the DynamoDB handler restores that; SQS and
Secrets Manager stay concurrent (long polls must not block DynamoDB).

With requests serialised, TransactWriteItems needs no snapshot of whole tables either: its
conditions are all checked before anything is written (nothing can change in between), and only
the items it writes are backed up in case applying one fails. moto's own deep copy of every table
a transaction touches made each transaction cost time in proportion to the table's size, which
slowed the suite's longer runs on moto down as their tables grew.

Usage: python tests/moto_server.py -H 127.0.0.1 -p PORT   (the arguments of moto_server)
"""

import copy
import sys
import threading

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_dynamodb = threading.Lock()
_call_action = DynamoHandler.call_action


def _serialised_call_action(self):
    with _dynamodb:
        return _call_action(self)


DynamoHandler.call_action = _serialised_call_action


def _key_of(backend, op_type, op):
    table = backend.get_table(op["TableName"])
    if op_type != "Put":
        return op["Key"]
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def _transact_write_items(self, transact_items):
    """moto 5.2.5's semantics (unique items, conditions, cancellation reasons in order), checked
    first and applied after, with per-item backups instead of whole-table copies."""
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    seen = set()
    plan = []
    errors = []
    for item in transact_items:
        if len(list(item.keys())) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
            raise MockValidationException("Unsupported transaction operation")
        key = _key_of(self, op_type, op)
        unique = (str(op["TableName"]), str(dict(sorted(key.items()))))
        if unique in seen:
            raise MultipleTransactionsException()
        seen.add(unique)
        current = self.get_item(op["TableName"], key)
        condition = op.get("ConditionExpression")
        if condition is not None:
            check = get_filter_expression(condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues"))
            if not check.expr(current):
                old = None
                if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                    old = current.to_json()["Attributes"]
                errors.append(("ConditionalCheckFailed", str(ConditionalCheckFailed(item=old).message), old))
                continue
        errors.append((None, None, None))
        plan.append((op_type, op, key, copy.deepcopy(current)))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)
    applied = []
    try:
        for op_type, op, key, before in plan:
            names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            if op_type == "Put":
                self.put_item(op["TableName"], op["Item"], expression_attribute_names=names, expression_attribute_values=values)
            elif op_type == "Delete":
                self.delete_item(op["TableName"], key, expression_attribute_names=names, expression_attribute_values=values)
            elif op_type == "Update":
                self.update_item(op["TableName"], key, update_expression=op["UpdateExpression"], expression_attribute_names=names, expression_attribute_values=values)
            applied.append((op["TableName"], key, before))
    except Exception as e:  # noqa: BLE001 - as moto: any failure cancels the whole transaction
        for table_name, key, before in reversed(applied):
            if before is None:
                self.delete_item(table_name, key)
            else:
                self.put_item(table_name, before.to_json()["Attributes"])
        if isinstance(e, (MultipleTransactionsException, MockValidationException)):
            raise
        raise TransactionCanceledException([(type(e).__name__, str(e), None)])


DynamoDBBackend.transact_write_items = _transact_write_items

if __name__ == "__main__":
    sys.exit(main())
