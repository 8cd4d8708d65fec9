"""AWS's limits where moto is laxer: a request AWS would refuse is refused
here, with AWS's status, error code and message, before moto sees it.

`check(call)` runs on every request (any principal: a limit is the service's,
not the caller's) and answers None (go on) or (status line, headers, body).

What is held, and where each figure comes from, is in docs/RELIABILITY.md
("AWS's limits in the local stack"). Sizes that AWS computes internally are
approximated as its documentation describes them:

- a DynamoDB item's size follows "DynamoDB item sizes and formats" (names and
  values in UTF-8 bytes; a number ~ 1 byte per two significant digits + 1; a
  list or map 3 bytes + 1 byte per element + its elements; a set the sum of
  its elements). Off by a few bytes at worst, so an item within a few bytes
  of 400 KB may be judged differently than AWS judges it;
- UpdateItem is not sized: the item's size is only known once the update is
  applied to the stored item (moto refuses an update that grows the item past
  its own, slightly lower, bound);
- SQS counts the body's UTF-8 bytes and each message attribute's name, type
  and value (moto counts the body's characters only).

A request too malformed to measure is left to moto, which answers it as it
does (the gate never turns a moto error into a crash).
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import re
import threading
from dataclasses import dataclass, field
from typing import Optional

from .calls import Call, aws_error

ROOT = pathlib.Path(__file__).resolve().parents[3]
TEMPLATE = pathlib.Path(os.environ.get("GATE_TEMPLATE", ROOT / "template.yaml"))

# --- the figures ---------------------------------------------------------

# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html
# ("Item size": 400 KB, names and values included).
DYNAMODB_ITEM_MAX = 400 * 1024
# Same page, "Partition key value": 2048 bytes; "Sort key value": 1024 bytes.
DYNAMODB_HASH_KEY_MAX = 2048
DYNAMODB_RANGE_KEY_MAX = 1024
# API_TransactWriteItems / API_TransactGetItems: "up to 100 action requests";
# "The aggregate size of the items in the transaction cannot exceed 4 MB."
DYNAMODB_TRANSACT_MAX = 100
DYNAMODB_TRANSACT_BYTES_MAX = 4 * 1024 * 1024
# API_BatchGetItem: "up to 100 items"; API_BatchWriteItem: "up to 25 put or delete requests".
DYNAMODB_BATCH_GET_MAX = 100
DYNAMODB_BATCH_WRITE_MAX = 25

# API_SetQueueAttributes, MaximumMessageSize: "An integer from 1,024 bytes
# (1 KiB) up to 1,048,576 bytes (1 MiB). Default: 1,048,576 bytes (1 MiB)."
# (262,144 before August 2025.) template.yaml sets no MaximumMessageSize, and
# moto's default is the same 1 MiB.
SQS_MESSAGE_MAX_DEFAULT = 1024 * 1024
# API_SendMessageBatch: "The maximum allowed individual message size and the
# maximum total payload size (the sum of the individual lengths of all of the
# batched messages) are both 1 MiB (1,048,576 bytes)"; at most 10 entries.
SQS_BATCH_BYTES_MAX = 1024 * 1024
SQS_BATCH_ENTRIES_MAX = 10
# API_SendMessage, DelaySeconds: "Valid values: 0 to 900. Maximum: 15 minutes."
SQS_DELAY_MAX = 900

# https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html:
# "Maximum input or output size for a task, state, or execution: 256 KiB of
# data as a UTF-8 encoded string" (API_StartExecution input, API_SendTaskSuccess
# output: "Maximum length of 262144", counted in UTF-8 bytes).
SFN_PAYLOAD_MAX = 262144
# API_StartExecution name: "Length Constraints: Minimum length of 1. Maximum length of 80."
SFN_NAME_MAX = 80
# API_SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat taskToken:
# "Minimum length of 1. Maximum length of 2048."
SFN_TOKEN_MAX = 2048
# API_SendTaskFailure: error "Maximum length of 256", cause "Maximum length of 32768".
SFN_ERROR_MAX = 256
SFN_CAUSE_MAX = 32768
# API_StartExecution name: "must not contain: white space, brackets < > { } [ ],
# wildcard characters ? *, special characters " # % \ ^ | ~ ` $ & , ; : /,
# control characters (U+0000-001F, U+007F-009F)".
SFN_NAME_FORBIDDEN = re.compile(r'[\s<>{}\[\]?*"#%\\^|~`$&,;:/\u0000-\u001f\u007f-\u009f]')


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str, extra: Optional[dict] = None):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def check(call: Call):
    """None when AWS would take the call as far as its limits go, else AWS's refusal."""
    rule = RULES.get((call.service, call.operation))
    if rule is None:
        return None
    try:
        rule(call)
    except Refusal as refusal:
        return answer(call, refusal.status, refusal.code, refusal.message, refusal.extra)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        # Malformed beyond measuring: moto answers it as it does.
        return None
    return None


def answer(call: Call, status: int, code: str, message: str, extra: Optional[dict] = None):
    """aws_error, with what differs per service: SQS's query code and fault in
    x-amzn-query-error (only SQS sends it), and no body on a HEAD."""
    status_line, headers, body = aws_error(call, status, code, message, extra)
    if call.protocol == "json":
        fault = "Receiver" if status >= 500 else "Sender"
        headers = [
            (k, f"{v.split(';')[0]};{fault}") if k == "x-amzn-query-error" else (k, v)
            for k, v in headers
            if k != "x-amzn-query-error" or call.service == "sqs"
        ]
    if call.method == "HEAD":
        headers = [(k, "0" if k == "Content-Length" else v) for k, v in headers]
        body = b""
    return status_line, headers, body


# --- the template's key schemas and queue sizes ---------------------------


@dataclass
class KeySchema:
    hash: str
    range: Optional[str] = None

    def names(self):
        return [n for n in (self.hash, self.range) if n]


@dataclass
class TableSchema:
    key: KeySchema
    types: dict = field(default_factory=dict)  # attribute name -> "S" | "N" | "B"
    indexes: dict = field(default_factory=dict)  # index name -> KeySchema


_loaded = None
_load_lock = threading.Lock()


def _template():
    import yaml

    from .iam import CfnLoader

    with open(TEMPLATE) as f:
        return yaml.load(f, Loader=CfnLoader)


def _key_schema(elements) -> KeySchema:
    hash_name = next(e["AttributeName"] for e in elements if e["KeyType"] == "HASH")
    range_name = next((e["AttributeName"] for e in elements if e["KeyType"] == "RANGE"), None)
    return KeySchema(hash_name, range_name)


def load():
    """({logical id: TableSchema}, {logical id: MaximumMessageSize}), read once from template.yaml."""
    global _loaded
    with _load_lock:
        if _loaded is None:
            tables, queues = {}, {}
            for logical, resource in (_template().get("Resources") or {}).items():
                kind, props = resource.get("Type"), resource.get("Properties") or {}
                if kind == "AWS::DynamoDB::Table":
                    schema = TableSchema(_key_schema(props["KeySchema"]))
                    schema.types = {a["AttributeName"]: a["AttributeType"] for a in props.get("AttributeDefinitions", [])}
                    for index in props.get("GlobalSecondaryIndexes", []) + props.get("LocalSecondaryIndexes", []):
                        schema.indexes[index["IndexName"]] = _key_schema(index["KeySchema"])
                    tables[logical] = schema
                elif kind == "AWS::SQS::Queue":
                    size = props.get("MaximumMessageSize")
                    queues[logical] = size if isinstance(size, int) else SQS_MESSAGE_MAX_DEFAULT
            _loaded = (tables, queues)
        return _loaded


def _by_physical_name(name: str, logical: dict):
    """The logical resource a physical name is STACK-LogicalId of (or the name itself)."""
    for logical_id, value in logical.items():
        if name == logical_id or name.endswith("-" + logical_id):
            return value
    return None


def table_schema(table_name: Optional[str]) -> Optional[TableSchema]:
    if not table_name:
        return None
    name = table_name.split(":table/", 1)[-1].split("/", 1)[0]  # a table ARN names it too
    return _by_physical_name(name, load()[0])


def queue_max(queue_url: Optional[str]) -> int:
    name = (queue_url or "").rstrip("/").rsplit("/", 1)[-1]
    found = _by_physical_name(name, load()[1]) if name else None
    return found or SQS_MESSAGE_MAX_DEFAULT


# --- DynamoDB sizes --------------------------------------------------------


def _utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def _binary(value: str) -> int:
    # Binary values travel base64-encoded; their raw length counts.
    try:
        return len(base64.b64decode(value, validate=False))
    except (ValueError, TypeError):
        return len(value) * 3 // 4


def number_size(text: str) -> int:
    """DynamoDB's approximation: 1 byte per two significant digits, plus 1."""
    mantissa = re.split(r"[eE]", text.strip().lstrip("+-"), maxsplit=1)[0].replace(".", "")
    digits = mantissa.strip("0")
    return (len(digits) + 1) // 2 + 1


def value_size(value: dict) -> int:
    """The size of one AttributeValue ({"S": ...}, {"M": {...}}, ...), without its name."""
    (kind, inner), = value.items()
    if kind == "S":
        return _utf8(inner)
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return _binary(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(_utf8(v) for v in inner)
    if kind == "NS":
        return sum(number_size(v) for v in inner)
    if kind == "BS":
        return sum(_binary(v) for v in inner)
    if kind == "L":
        # 3 bytes for the list, 1 byte per element, and the elements.
        return 3 + sum(1 + value_size(v) for v in inner)
    if kind == "M":
        # 3 bytes for the map, 1 byte per element, and each element's name and value.
        return 3 + sum(1 + _utf8(k) + value_size(v) for k, v in inner.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict) -> int:
    """An item's size as DynamoDB counts it toward the 400 KB limit."""
    return sum(_utf8(name) + value_size(value) for name, value in item.items())


# --- DynamoDB refusals ------------------------------------------------------


def _validation(message: str):
    return Refusal(400, "ValidationException", message)


def _empty(value: dict) -> bool:
    return value.get("S") == "" or value.get("B") == ""


def _check_key_value(name: str, value: dict, role: str, index: Optional[str] = None):
    """A key attribute's value: not empty, not over its size limit."""
    if _empty(value):
        if index:
            raise _validation(
                "One or more parameter values are not valid. A value specified for a secondary index key is not "
                "supported. The AttributeValue for a key attribute cannot contain an empty string value. "
                f"IndexName: {index}, IndexKey: {name}"
            )
        raise _validation(
            "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain "
            f"an empty string value. Key: {name}"
        )
    size = value_size(value)
    if role == "hash" and size > DYNAMODB_HASH_KEY_MAX:
        raise _validation(
            f"One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of {DYNAMODB_HASH_KEY_MAX} bytes"
        )
    if role == "range" and size > DYNAMODB_RANGE_KEY_MAX:
        raise _validation(
            "One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size "
            f"limit of {DYNAMODB_RANGE_KEY_MAX} bytes"
        )


def _map(value) -> dict:
    if not isinstance(value, dict):
        raise TypeError("not a map")  # malformed: left to moto
    return value


def _check_key(table: Optional[str], key: dict):
    """A Key naming one item: the table's key attributes only, each valid."""
    _map(key)
    schema = table_schema(table)
    if schema is None:
        for name, value in key.items():  # no schema known: at least no empty key values
            if _empty(value):
                _check_key_value(name, value, "")
        return
    if sorted(key) != sorted(schema.key.names()):
        raise _validation("The provided key element does not match the schema")
    for role, name in (("hash", schema.key.hash), ("range", schema.key.range)):
        if name:
            _check_type(schema, name, key[name])
            _check_key_value(name, key[name], role)


def _check_type(schema: TableSchema, name: str, value: dict, index: Optional[str] = None):
    expected, actual = schema.types.get(name), next(iter(value))
    if expected and actual != expected:
        if index:
            raise _validation(
                f"One or more parameter values were invalid: Type mismatch for Index Key {name} "
                f"Expected: {expected} Actual: {actual} IndexName: {index}"
            )
        raise _validation(
            f"One or more parameter values were invalid: Type mismatch for key {name} expected: {expected} actual: {actual}"
        )


def _check_item_keys(table: Optional[str], item: dict):
    """A whole item's key attributes, and those of every index it is in."""
    _map(item)
    schema = table_schema(table)
    if schema is None:
        return
    for role, name in (("hash", schema.key.hash), ("range", schema.key.range)):
        if name and name not in item:
            raise _validation(f"One or more parameter values were invalid: Missing the key {name} in the item")
        if name:
            _check_type(schema, name, item[name])
            _check_key_value(name, item[name], role)
    for index, keys in schema.indexes.items():
        for role, name in (("hash", keys.hash), ("range", keys.range)):
            if name and name in item:  # sparse: an item without the attribute is not in the index
                _check_type(schema, name, item[name], index)
                _check_key_value(name, item[name], role, index)


def _item_too_large():
    return _validation("Item size has exceeded the maximum allowed size")


def _check_item(table: Optional[str], item: dict):
    _check_item_keys(table, item)
    if item_size(item) > DYNAMODB_ITEM_MAX:
        raise _item_too_large()


def _item_key(table: Optional[str], item: dict) -> Optional[dict]:
    schema = table_schema(table)
    if schema is None:
        return None
    return {n: item[n] for n in schema.key.names() if n in item}


def _identity(table: Optional[str], key: Optional[dict]):
    if key is None:
        return None
    name = (table or "").split(":table/", 1)[-1]
    return name, json.dumps(key, sort_keys=True)


def put_item(call: Call):
    _check_item(call.params.get("TableName"), call.params["Item"])


def key_only(call: Call):
    # GetItem, DeleteItem, UpdateItem. UpdateItem's resulting size is unknown
    # until it is applied to the stored item, so only its key is checked.
    _check_key(call.params.get("TableName"), call.params["Key"])


def transact_write_items(call: Call):
    actions = call.params["TransactItems"]
    if len(actions) > DYNAMODB_TRANSACT_MAX:
        raise _validation(
            "1 validation error detected at 'transactItems' failed to satisfy constraint: "
            f"Member must have length less than or equal to {DYNAMODB_TRANSACT_MAX}"
        )
    seen, total, oversized = set(), 0, None
    for position, action in enumerate(actions):
        (kind, body), = action.items()
        table = body.get("TableName")
        if kind == "Put":
            _check_item_keys(table, body["Item"])
            size = item_size(body["Item"])
            total += size
            if size > DYNAMODB_ITEM_MAX and oversized is None:
                oversized = position
            key = _item_key(table, body["Item"])
        else:
            _check_key(table, body["Key"])
            total += item_size(body["Key"])
            key = body["Key"]
        identity = _identity(table, key)
        if identity is not None:
            if identity in seen:
                raise _validation("Transaction request cannot include multiple operations on one item")
            seen.add(identity)
    if total > DYNAMODB_TRANSACT_BYTES_MAX:
        # The wording is ours: AWS refuses with a ValidationException.
        raise _validation("Transaction request size has exceeded the maximum allowed size of 4 MB")
    if oversized is not None:
        # An item too large is a cancellation reason of the transaction (as
        # AWS and moto report it), not a refusal of the request.
        reasons = [{"Code": "None"} for _ in actions]
        reasons[oversized] = {"Code": "ValidationError", "Message": "Item size has exceeded the maximum allowed size"}
        codes = ", ".join(r["Code"] for r in reasons)
        raise Refusal(
            400,
            "TransactionCanceledException",
            f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
            {"CancellationReasons": reasons},
        )


def transact_get_items(call: Call):
    actions = call.params["TransactItems"]
    if len(actions) > DYNAMODB_TRANSACT_MAX:
        raise _validation(
            "1 validation error detected at 'transactItems' failed to satisfy constraint: "
            f"Member must have length less than or equal to {DYNAMODB_TRANSACT_MAX}"
        )
    seen = set()
    for action in actions:
        body = action["Get"]
        _check_key(body.get("TableName"), body["Key"])
        identity = _identity(body.get("TableName"), body["Key"])
        if identity in seen:
            raise _validation("Transaction request cannot include multiple operations on one item")
        seen.add(identity)


def batch_get_item(call: Call):
    requests = call.params["RequestItems"]
    if sum(len(r.get("Keys", [])) for r in requests.values()) > DYNAMODB_BATCH_GET_MAX:
        raise _validation("Too many items requested for the BatchGetItem call")
    for table, request in requests.items():
        seen = set()
        for key in request.get("Keys", []):
            _check_key(table, key)
            identity = _identity(table, key)
            if identity in seen:
                raise _validation("Provided list of item keys contains duplicates")
            seen.add(identity)


def batch_write_item(call: Call):
    requests = call.params["RequestItems"]
    for table, writes in requests.items():
        if len(writes) > DYNAMODB_BATCH_WRITE_MAX:
            raise _validation(
                f"1 validation error detected: Value '{{{table}={len(writes)}}}' at 'requestItems' failed to satisfy "
                f"constraint: Map value must satisfy constraint: [Member must have length less than or equal to "
                f"{DYNAMODB_BATCH_WRITE_MAX}, Member must have length greater than or equal to 1]"
            )
    if sum(len(w) for w in requests.values()) > DYNAMODB_BATCH_WRITE_MAX:
        raise _validation(
            "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: "
            f"Member must have length less than or equal to {DYNAMODB_BATCH_WRITE_MAX}"
        )
    for table, writes in requests.items():
        seen = set()
        for write in writes:
            if "PutRequest" in write:
                item = write["PutRequest"]["Item"]
                _check_item(table, item)
                key = _item_key(table, item)
            else:
                key = write["DeleteRequest"]["Key"]
                _check_key(table, key)
            identity = _identity(table, key)
            if identity is not None:
                if identity in seen:
                    raise _validation("Provided list of item keys contains duplicates")
                seen.add(identity)


# "a = :v", "a < :v", "a BETWEEN :lo AND :hi", "begins_with(a, :v)": the
# values a key condition binds to a key attribute.
_COMPARISON = re.compile(r"([#\w.]+)\s*(=|<=|<|>=|>)\s*(:\w+)")
_REVERSED = re.compile(r"(:\w+)\s*(=|<=|<|>=|>)\s*([#\w.]+)")
_BETWEEN = re.compile(r"([#\w.]+)\s+BETWEEN\s+(:\w+)\s+AND\s+(:\w+)", re.IGNORECASE)
_BEGINS = re.compile(r"begins_with\s*\(\s*([#\w.]+)\s*,\s*(:\w+)\s*\)", re.IGNORECASE)


def key_condition_values(expression: str, names: dict):
    """[(attribute, operator, placeholder)] of a KeyConditionExpression."""
    found = []
    for attribute, operator, placeholder in _COMPARISON.findall(expression):
        found.append((attribute, operator, placeholder))
    for placeholder, operator, attribute in _REVERSED.findall(expression):
        found.append((attribute, operator, placeholder))
    for attribute, low, high in _BETWEEN.findall(expression):
        found += [(attribute, "BETWEEN", low), (attribute, "BETWEEN", high)]
    for attribute, placeholder in _BEGINS.findall(expression):
        found.append((attribute, "begins_with", placeholder))
    return [(names.get(a, a), op, p) for a, op, p in found]


def _read_keys(schema: Optional[TableSchema], index: Optional[str]) -> Optional[KeySchema]:
    if schema is None:
        return None
    return schema.indexes.get(index) if index else schema.key


def _check_start_key(call: Call, partition_value: Optional[dict]):
    start = call.params.get("ExclusiveStartKey")
    if start is None:
        return
    _map(start)
    prefix = "The provided starting key is invalid: "
    for name, value in start.items():
        if _empty(value):
            raise _validation(
                prefix + "One or more parameter values are not valid. The AttributeValue for a key attribute "
                f"cannot contain an empty string value. Key: {name}"
            )
    schema = table_schema(call.params.get("TableName"))
    index = call.params.get("IndexName")
    read_keys = _read_keys(schema, index)
    if read_keys is None:  # an unknown table or index: moto answers
        return
    # A page of an index starts at an index key plus the item's table key.
    expected = set(schema.key.names()) | set(read_keys.names())
    if set(start) != expected or any(
        len(value) != 1 or next(iter(value)) != schema.types.get(name, next(iter(value))) for name, value in start.items()
    ):
        raise _validation(prefix + "The provided key element does not match the schema")
    if partition_value is not None and start[read_keys.hash] != partition_value:
        raise _validation("The provided starting key is outside query boundaries based on provided conditions")


def query(call: Call):
    params = call.params
    schema = table_schema(params.get("TableName"))
    read_keys = _read_keys(schema, params.get("IndexName"))
    values = params.get("ExpressionAttributeValues") or {}
    partition_value = None
    expression = params.get("KeyConditionExpression")
    if expression:
        for attribute, operator, placeholder in key_condition_values(expression, params.get("ExpressionAttributeNames") or {}):
            value = values.get(placeholder)
            if not isinstance(value, dict):
                continue
            role = ""
            if read_keys is not None:
                role = "hash" if attribute == read_keys.hash else "range" if attribute == read_keys.range else ""
            _check_key_value(attribute, value, role)
            if role == "hash" and operator == "=":
                partition_value = value
    _check_start_key(call, partition_value)


def scan(call: Call):
    _check_start_key(call, None)


# --- SQS ----------------------------------------------------------------------


def _sqs_error(code: str, message: str, query_code: Optional[str] = None):
    # SQS's JSON protocol names the error by its shape in __type and by the
    # query protocol's code in x-amzn-query-error (answer() fixes the header).
    return Refusal(400, query_code or code, message, {"__type": f"com.amazonaws.sqs#{code}"})


def _attributes_size(attributes: Optional[dict]) -> int:
    """Message attributes count toward the size: each name, type and value."""
    total = 0
    for name, attribute in (attributes or {}).items():
        total += _utf8(name) + _utf8(attribute.get("DataType", ""))
        if "StringValue" in attribute:
            total += _utf8(attribute["StringValue"])
        if "BinaryValue" in attribute:
            total += _binary(attribute["BinaryValue"])
    return total


def _query_entries(params: dict, prefix: str) -> list:
    """SQS's query protocol flattens lists: SendMessageBatchRequestEntry.1.MessageBody=..."""
    entries = {}
    for name, value in params.items():
        match = re.match(rf"{re.escape(prefix)}\.(\d+)\.(\w+)$", name)
        if match:
            entries.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return [entries[i] for i in sorted(entries)]


def _message_size(entry: dict) -> int:
    return _utf8(entry.get("MessageBody", "")) + _attributes_size(entry.get("MessageAttributes"))


def _check_delay(value):
    if value is None or value == "":
        return
    delay = int(value)
    if delay < 0 or delay > SQS_DELAY_MAX:
        raise _sqs_error(
            "InvalidParameterValue",
            f"Value {delay} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= {SQS_DELAY_MAX}.",
        )


def send_message(call: Call):
    params = call.params
    limit = queue_max(params.get("QueueUrl"))
    if _message_size(params) > limit:
        raise _sqs_error(
            "InvalidParameterValue", f"One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes."
        )
    _check_delay(params.get("DelaySeconds"))


def send_message_batch(call: Call):
    params = call.params
    entries = params.get("Entries")
    if entries is None:
        entries = _query_entries(params, "SendMessageBatchRequestEntry")
    if len(entries) > SQS_BATCH_ENTRIES_MAX:
        raise _sqs_error(
            "TooManyEntriesInBatchRequest",
            f"Maximum number of entries per request are {SQS_BATCH_ENTRIES_MAX}. You have sent {len(entries)}.",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        )
    total = sum(_message_size(e) for e in entries)
    if total > SQS_BATCH_BYTES_MAX:
        raise _sqs_error(
            "BatchRequestTooLong",
            f"Batch requests cannot be longer than {SQS_BATCH_BYTES_MAX} bytes. You have sent {total} bytes.",
            "AWS.SimpleQueueService.BatchRequestTooLong",
        )
    limit = queue_max(params.get("QueueUrl"))
    for entry in entries:
        if _message_size(entry) > limit:
            raise _sqs_error(
                "InvalidParameterValue",
                f"One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes.",
            )
        _check_delay(entry.get("DelaySeconds"))


# --- Step Functions -------------------------------------------------------


def _too_long(member: str, limit: int, value: Optional[str] = None):
    shown = f"Value '{value}' at" if value is not None else "Value at"
    return _validation(
        f"1 validation error detected: {shown} '{member}' failed to satisfy constraint: "
        f"Member must have length less than or equal to {limit}"
    )


def start_execution(call: Call):
    params = call.params
    name = params.get("name")
    if name is not None:
        if len(name) > SFN_NAME_MAX:
            raise _too_long("name", SFN_NAME_MAX, name)
        if name == "" or SFN_NAME_FORBIDDEN.search(name):
            raise Refusal(400, "InvalidName", f"Invalid Name: '{name}'")
    if _utf8(params.get("input") or "") > SFN_PAYLOAD_MAX:
        raise _too_long("input", SFN_PAYLOAD_MAX)


def _check_token(params: dict):
    if len(params.get("taskToken") or "") > SFN_TOKEN_MAX:
        raise _too_long("taskToken", SFN_TOKEN_MAX)


def send_task_success(call: Call):
    _check_token(call.params)
    if _utf8(call.params.get("output") or "") > SFN_PAYLOAD_MAX:
        raise _too_long("output", SFN_PAYLOAD_MAX)


def send_task_failure(call: Call):
    _check_token(call.params)
    if len(call.params.get("error") or "") > SFN_ERROR_MAX:
        raise _too_long("error", SFN_ERROR_MAX)
    if len(call.params.get("cause") or "") > SFN_CAUSE_MAX:
        raise _too_long("cause", SFN_CAUSE_MAX)


def send_task_heartbeat(call: Call):
    _check_token(call.params)


RULES = {
    ("dynamodb", "PutItem"): put_item,
    ("dynamodb", "GetItem"): key_only,
    ("dynamodb", "DeleteItem"): key_only,
    ("dynamodb", "UpdateItem"): key_only,
    ("dynamodb", "TransactWriteItems"): transact_write_items,
    ("dynamodb", "TransactGetItems"): transact_get_items,
    ("dynamodb", "BatchGetItem"): batch_get_item,
    ("dynamodb", "BatchWriteItem"): batch_write_item,
    ("dynamodb", "Query"): query,
    ("dynamodb", "Scan"): scan,
    ("sqs", "SendMessage"): send_message,
    ("sqs", "SendMessageBatch"): send_message_batch,
    ("states", "StartExecution"): start_execution,
    ("states", "SendTaskSuccess"): send_task_success,
    ("states", "SendTaskFailure"): send_task_failure,
    ("states", "SendTaskHeartbeat"): send_task_heartbeat,
}
