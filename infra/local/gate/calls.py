"""One AWS request as the gate sees it: which service and operation, who
signed it, and its parameters; and AWS's own error answers, per protocol.

Shared by the role check (iam.py), AWS's limits (limits.py) and the fault
layer (faults.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import parse_qsl, unquote


@dataclass
class Call:
    # "dynamodb" | "sqs" | "s3" | "states" | "sts" | ... (IAM's service prefix)
    service: str
    # The API operation as AWS names it: "PutItem", "TransactWriteItems",
    # "SendMessage", "GetObject", "HeadObject", "CreateMultipartUpload",
    # "StartExecution", "SendTaskSuccess", ... ("" when unknown)
    operation: str
    # The access key id that signed the request (Authorization header or a
    # presigned URL's X-Amz-Credential); None when unsigned.
    principal: Optional[str]
    # JSON body (DynamoDB, Step Functions, SQS's JSON protocol), or the form
    # / query fields (SQS's query protocol); {} for S3.
    params: dict = field(default_factory=dict)
    method: str = "GET"
    path: str = "/"
    query: dict = field(default_factory=dict)  # name -> first value
    headers: dict = field(default_factory=dict)  # lower-case name -> value
    body: bytes = b""
    # S3 only: the bucket and key the path names (path-style addressing).
    bucket: Optional[str] = None
    key: Optional[str] = None
    # "json" (DynamoDB, SFN, SQS JSON) | "query" (SQS query) | "rest-xml" (S3)
    protocol: str = "json"
    # The region of the signature's scope (None when unsigned).
    region: Optional[str] = None
    # Whether the signature came in the query string (a presigned URL).
    presigned: bool = False

    @property
    def role_name(self) -> Optional[str]:
        """The principal without its fault profile: "WorkerFunction~storm" -> "WorkerFunction"."""
        return self.principal.split("~", 1)[0] if self.principal else None


# X-Amz-Target prefixes of the JSON protocols -> IAM service prefix.
TARGETS = {"DynamoDB_20120810": "dynamodb", "AmazonSQS": "sqs", "AWSStepFunctions": "states"}
# SigV4 scope service names that differ from IAM's prefix.
SCOPE_SERVICES = {"stepfunctions": "states"}
# Query-protocol actions of STS (the rest with Action= is SQS's query protocol).
STS_ACTIONS = {"GetCallerIdentity", "AssumeRole", "GetSessionToken", "GetFederationToken",
               "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML", "DecodeAuthorizationMessage", "GetAccessKeyInfo"}

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")


def headers_of(environ: dict) -> dict:
    headers = {}
    for name, value in environ.items():
        if name.startswith("HTTP_"):
            headers[name[5:].replace("_", "-").lower()] = value
    for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(name):
            headers[name.replace("_", "-").lower()] = environ[name]
    return headers


def signer(headers: dict, query: dict):
    """(access key id, region, scope service, presigned) of a SigV4 (or V2) signature."""
    auth = headers.get("authorization", "")
    match = _CREDENTIAL.search(auth)
    if match:
        return match.group(1), match.group(3), match.group(4), False
    credential = query.get("X-Amz-Credential")
    if credential:
        parts = credential.split("/")
        if len(parts) >= 5:
            return parts[0], parts[2], parts[3], True
        return parts[0], None, None, True
    if auth.startswith("AWS "):  # SigV2: "AWS AKID:signature"
        return auth[4:].split(":", 1)[0], None, None, False
    if query.get("AWSAccessKeyId"):  # SigV2 presigned
        return query["AWSAccessKeyId"], None, None, True
    return None, None, None, False


def raw_path(environ: dict) -> str:
    """The request path, percent-decoded once as UTF-8 (S3 keys may hold any character)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        raw = raw.split("?", 1)[0]
        if "://" in raw:  # an absolute URI
            raw = "/" + raw.split("://", 1)[1].split("/", 1)[-1] if "/" in raw.split("://", 1)[1] else "/"
        return unquote(raw)
    # PEP 3333: PATH_INFO is the decoded bytes as latin-1.
    return environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")


def parse(environ: dict, body: bytes) -> Call:
    """Reads a WSGI request into a Call."""
    method = environ.get("REQUEST_METHOD", "GET").upper()
    headers = headers_of(environ)
    query = {}
    for name, value in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True):
        query.setdefault(name, value)
    path = raw_path(environ)
    principal, region, scope_service, presigned = signer(headers, query)
    scope_service = SCOPE_SERVICES.get(scope_service, scope_service)
    call = Call(service="", operation="", principal=principal, method=method, path=path, query=query,
                headers=headers, body=body, region=region, presigned=presigned)

    target = headers.get("x-amz-target", "")
    if target and "." in target:
        prefix, operation = target.split(".", 1)
        call.service = TARGETS.get(prefix, scope_service or prefix.lower())
        call.operation = operation
        call.protocol = "json"
        call.params = _json(body)
        return call

    content_type = headers.get("content-type", "")
    form = {}
    if method == "POST" and content_type.startswith("application/x-www-form-urlencoded"):
        for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            form.setdefault(name, value)
    fields = {**query, **form}
    action = fields.get("Action")
    if action and scope_service != "s3":
        call.service = scope_service or ("sts" if action in STS_ACTIONS else "sqs")
        call.operation = action
        call.protocol = "query"
        call.params = fields
        return call

    if scope_service in (None, "s3") and not path.startswith(("/moto-api", "/_gate")):
        _s3(call, environ)
        return call

    call.service = scope_service or ""
    return call


def _json(body: bytes) -> dict:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _bucket_and_key(call: Call, environ: dict):
    host = (call.headers.get("host") or environ.get("SERVER_NAME", "")).split(":")[0].lower()
    # Virtual-hosted style (bucket.s3.amazonaws.com, bucket.localhost); the
    # functions use path style against the local stack.
    vhost = re.match(r"^(.+?)\.(s3[.-].*|localhost)$", host)
    if vhost and not re.match(r"^[\d.]+$", host) and vhost.group(1) != "s3":
        bucket, key = vhost.group(1), call.path.lstrip("/")
    else:
        parts = call.path.lstrip("/").split("/", 1)
        bucket = parts[0] or None
        key = parts[1] if len(parts) > 1 else ""
    return bucket, (key if key else None)


def _s3(call: Call, environ: dict):
    call.service, call.protocol = "s3", "rest-xml"
    call.bucket, call.key = _bucket_and_key(call, environ)
    q, m, h = call.query, call.method, call.headers
    copy = "x-amz-copy-source" in h
    if m == "OPTIONS":
        call.operation = "PreflightRequest"
    elif call.bucket is None:
        call.operation = "ListBuckets" if m == "GET" else ""
    elif call.key is None:
        call.operation = _s3_bucket_operation(m, q)
    elif m in ("GET", "HEAD"):
        if "uploadId" in q:
            call.operation = "ListParts"
        elif "tagging" in q:
            call.operation = "GetObjectTagging"
        elif "acl" in q:
            call.operation = "GetObjectAcl"
        elif "attributes" in q:
            call.operation = "GetObjectAttributes"
        else:
            call.operation = "HeadObject" if m == "HEAD" else "GetObject"
    elif m == "PUT":
        if "partNumber" in q and "uploadId" in q:
            call.operation = "UploadPartCopy" if copy else "UploadPart"
        elif "tagging" in q:
            call.operation = "PutObjectTagging"
        elif "acl" in q:
            call.operation = "PutObjectAcl"
        elif "retention" in q:
            call.operation = "PutObjectRetention"
        elif "legal-hold" in q:
            call.operation = "PutObjectLegalHold"
        else:
            call.operation = "CopyObject" if copy else "PutObject"
    elif m == "DELETE":
        if "uploadId" in q:
            call.operation = "AbortMultipartUpload"
        elif "tagging" in q:
            call.operation = "DeleteObjectTagging"
        else:
            call.operation = "DeleteObject"
    elif m == "POST":
        if "uploads" in q:
            call.operation = "CreateMultipartUpload"
        elif "uploadId" in q:
            call.operation = "CompleteMultipartUpload"
        elif "restore" in q:
            call.operation = "RestoreObject"
        elif "select" in q:
            call.operation = "SelectObjectContent"
    # The AWS SDKs (Rust's, recent boto3) name the operation themselves.
    if re.fullmatch(r"[A-Z][A-Za-z0-9]{2,63}", q.get("x-id", "")) and call.bucket is not None:
        call.operation = q["x-id"]


# Bucket sub-resources (?cors, ?policy, ...) -> the name their operations use.
_SUBRESOURCES = {
    "cors": "BucketCors", "policy": "BucketPolicy", "tagging": "BucketTagging", "lifecycle": "BucketLifecycleConfiguration",
    "versioning": "BucketVersioning", "acl": "BucketAcl", "encryption": "BucketEncryption", "website": "BucketWebsite",
    "notification": "BucketNotificationConfiguration", "logging": "BucketLogging", "replication": "BucketReplication",
    "ownershipControls": "BucketOwnershipControls", "publicAccessBlock": "PublicAccessBlock",
    "accelerate": "BucketAccelerateConfiguration", "object-lock": "ObjectLockConfiguration",
    "requestPayment": "BucketRequestPayment", "location": "BucketLocation",
}


def _s3_bucket_operation(method: str, q: dict) -> str:
    for name, suffix in _SUBRESOURCES.items():
        if name in q:
            verb = {"GET": "Get", "HEAD": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method)
            return verb + suffix if verb else ""
    if method == "GET":
        if "uploads" in q:
            return "ListMultipartUploads"
        if "versions" in q:
            return "ListObjectVersions"
        return "ListObjectsV2" if q.get("list-type") == "2" else "ListObjects"
    if method == "HEAD":
        return "HeadBucket"
    if method == "PUT":
        return "CreateBucket"
    if method == "DELETE":
        return "DeleteBucket"
    if method == "POST":
        return "DeleteObjects" if "delete" in q else "PostObject"
    return ""


def aws_error(call: Call, status: int, code: str, message: str, extra: Optional[dict] = None):
    """(status line, headers, body) of AWS's error answer in the call's protocol."""
    reason = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 413: "Request Entity Too Large",
              500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Error")
    if call.protocol == "rest-xml":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{_xml(message)}</Message><RequestId>gate</RequestId></Error>"
        ).encode()
        headers = [("Content-Type", "application/xml")]
    elif call.protocol == "query":
        body = (
            '<?xml version="1.0"?><ErrorResponse><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{_xml(message)}</Message></Error><RequestId>gate</RequestId></ErrorResponse>"
        ).encode()
        headers = [("Content-Type", "text/xml")]
    else:
        prefix = {"dynamodb": "com.amazonaws.dynamodb.v20120810#", "sqs": "com.amazonaws.sqs#"}.get(call.service, "")
        document = {"__type": prefix + code, "message": message}
        if extra:
            document.update(extra)
        body = json.dumps(document).encode()
        headers = [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-query-error", f"{code};Sender")]
    headers.append(("Content-Length", str(len(body))))
    headers.append(("x-amzn-RequestId", "gate"))
    return f"{status} {reason}", headers, body


def access_denied(call: Call, message: str):
    """AWS's answer to a call IAM refused, as each service gives it."""
    if call.protocol == "rest-xml":
        status_line, headers, body = aws_error(call, 403, "AccessDenied", message)
        if call.method == "HEAD":  # a HEAD answer has no body
            headers = [(k, "0" if k == "Content-Length" else v) for k, v in headers]
            body = b""
        return status_line, headers, body
    if call.protocol == "query":  # SQS's and STS's query protocol
        return aws_error(call, 403, "AccessDenied", message)
    if call.service == "sqs":
        # SQS's JSON protocol keeps the query protocol's code in a header.
        status_line, headers, body = aws_error(call, 403, "AccessDeniedException", message)
        headers = [(k, "AccessDenied;Sender" if k == "x-amzn-query-error" else v) for k, v in headers]
        return status_line, headers, body
    # DynamoDB and Step Functions answer 400 AccessDeniedException (no query-error header: only SQS sends it).
    status_line, headers, body = aws_error(call, 400, "AccessDeniedException", message)
    return status_line, [(k, v) for k, v in headers if k != "x-amzn-query-error"], body


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
