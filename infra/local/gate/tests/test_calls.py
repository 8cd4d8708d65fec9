"""Request parsing: real boto3 requests, signed and captured before they are sent, read back as WSGI."""

import io
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from werkzeug.test import EnvironBuilder

from gate import calls


class Captured(Exception):
    def __init__(self, request):
        self.request = request


def _capture(request, **_):
    raise Captured(request)


def client(service, key="WorkerFunction~storm"):
    c = boto3.client(service, endpoint_url="http://127.0.0.1:5000", region_name="eu-west-1", aws_access_key_id=key,
                     aws_secret_access_key="secret", config=Config(s3={"addressing_style": "path"}))
    c.meta.events.register("before-send", _capture)
    return c


def environ_of(method, url, headers, body):
    parts = urlsplit(url)
    items = headers.items() if isinstance(headers, dict) else headers
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in items}
    environ = EnvironBuilder(path=parts.path, method=method, headers=headers, data=body or b"",
                             query_string=parts.query).get_environ()
    # werkzeug's server keeps the raw path (S3 keys must not be decoded twice).
    environ["RAW_URI"] = parts.path + ("?" + parts.query if parts.query else "")
    return environ


def parse(send):
    """The Call the gate reads from what `send()` would put on the wire."""
    with pytest.raises(Captured) as captured:
        send()
    request = captured.value.request
    body = request.body
    if hasattr(body, "read"):
        body = body.read()
    body = body.encode() if isinstance(body, str) else (body or b"")
    environ = environ_of(request.method, request.url, list(request.headers.items()), body)
    read = environ["wsgi.input"].read()
    return calls.parse(environ, read)


def test_dynamodb():
    call = parse(lambda: client("dynamodb").get_item(TableName="t", Key={"pk": {"S": "JOB#1"}}))
    assert (call.service, call.operation, call.protocol) == ("dynamodb", "GetItem", "json")
    assert (call.principal, call.role_name, call.region) == ("WorkerFunction~storm", "WorkerFunction", "eu-west-1")
    assert call.params["Key"] == {"pk": {"S": "JOB#1"}}


def test_sqs_json_protocol():
    call = parse(lambda: client("sqs").send_message(QueueUrl="http://127.0.0.1:5000/123456789012/q", MessageBody="{}"))
    assert (call.service, call.operation, call.protocol) == ("sqs", "SendMessage", "json")
    assert call.params["QueueUrl"].endswith("/123456789012/q")


def test_sqs_query_protocol():
    body = b"Action=ReceiveMessage&QueueUrl=http%3A%2F%2F127.0.0.1%3A5000%2F123456789012%2Fq&Version=2012-11-05"
    environ = environ_of("POST", "http://127.0.0.1:5000/", {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "Authorization": "AWS4-HMAC-SHA256 Credential=NotifyFunction/20240101/us-east-1/sqs/aws4_request, "
                         "SignedHeaders=host, Signature=abc"}, body)
    call = calls.parse(environ, environ["wsgi.input"].read())
    assert (call.service, call.operation, call.protocol, call.principal) == ("sqs", "ReceiveMessage", "query", "NotifyFunction")
    assert call.params["QueueUrl"] == "http://127.0.0.1:5000/123456789012/q"


def test_step_functions_and_sts():
    call = parse(lambda: client("stepfunctions").start_execution(stateMachineArn="arn:aws:states:eu-west-1:1:stateMachine:m"))
    assert (call.service, call.operation) == ("states", "StartExecution")
    assert call.params["stateMachineArn"].endswith(":m")
    call = parse(lambda: client("sts").get_caller_identity())
    assert (call.service, call.operation, call.protocol) == ("sts", "GetCallerIdentity", "query")


S3_CASES = [
    (lambda s: s.get_object(Bucket="b", Key="uploads/a b/ü.png"), "GetObject", "uploads/a b/ü.png"),
    (lambda s: s.head_object(Bucket="b", Key="k"), "HeadObject", "k"),
    (lambda s: s.put_object(Bucket="b", Key="k", Body=b"x", Tagging="a=b"), "PutObject", "k"),
    (lambda s: s.copy_object(Bucket="b", Key="k", CopySource={"Bucket": "b", "Key": "src"}), "CopyObject", "k"),
    (lambda s: s.delete_object(Bucket="b", Key="k"), "DeleteObject", "k"),
    (lambda s: s.create_multipart_upload(Bucket="b", Key="k"), "CreateMultipartUpload", "k"),
    (lambda s: s.upload_part(Bucket="b", Key="k", UploadId="u", PartNumber=1, Body=b"x"), "UploadPart", "k"),
    (lambda s: s.upload_part_copy(Bucket="b", Key="k", UploadId="u", PartNumber=1, CopySource="b/src"), "UploadPartCopy", "k"),
    (lambda s: s.complete_multipart_upload(Bucket="b", Key="k", UploadId="u",
                                           MultipartUpload={"Parts": [{"ETag": "e", "PartNumber": 1}]}),
     "CompleteMultipartUpload", "k"),
    (lambda s: s.abort_multipart_upload(Bucket="b", Key="k", UploadId="u"), "AbortMultipartUpload", "k"),
    (lambda s: s.list_parts(Bucket="b", Key="k", UploadId="u"), "ListParts", "k"),
    (lambda s: s.put_object_tagging(Bucket="b", Key="k", Tagging={"TagSet": []}), "PutObjectTagging", "k"),
    (lambda s: s.get_object_tagging(Bucket="b", Key="k"), "GetObjectTagging", "k"),
    (lambda s: s.delete_object_tagging(Bucket="b", Key="k"), "DeleteObjectTagging", "k"),
    (lambda s: s.list_objects_v2(Bucket="b", Prefix="uploads/"), "ListObjectsV2", None),
    (lambda s: s.list_objects(Bucket="b"), "ListObjects", None),
    (lambda s: s.head_bucket(Bucket="b"), "HeadBucket", None),
    (lambda s: s.create_bucket(Bucket="b"), "CreateBucket", None),
    (lambda s: s.put_bucket_cors(Bucket="b", CORSConfiguration={"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}),
     "PutBucketCors", None),
    (lambda s: s.delete_objects(Bucket="b", Delete={"Objects": [{"Key": "k"}]}), "DeleteObjects", None),
    (lambda s: s.list_multipart_uploads(Bucket="b"), "ListMultipartUploads", None),
]


@pytest.mark.parametrize("send, operation, key", S3_CASES, ids=[c[1] for c in S3_CASES])
def test_s3(send, operation, key):
    call = parse(lambda: send(client("s3", "CreateFunction")))
    assert (call.service, call.operation, call.protocol) == ("s3", operation, "rest-xml")
    assert (call.bucket, call.key, call.principal) == ("b", key, "CreateFunction")


def test_s3_sdk_operation_names():
    # The AWS SDK for Rust adds ?x-id=Operation to object requests.
    for url, method, operation in [("/b/k?x-id=GetObject", "GET", "GetObject"),
                                   ("/b/k?uploads&x-id=CreateMultipartUpload", "POST", "CreateMultipartUpload"),
                                   ("/b/k?partNumber=1&uploadId=u&x-id=UploadPart", "PUT", "UploadPart")]:
        environ = environ_of(method, "http://127.0.0.1:5000" + url, {
            "Authorization": "AWS4-HMAC-SHA256 Credential=WorkerFunction/20240101/us-east-1/s3/aws4_request, "
                             "SignedHeaders=host, Signature=x"}, b"")
        call = calls.parse(environ, b"")
        assert (call.operation, call.bucket, call.key) == (operation, "b", "k")


def test_s3_list_prefix_and_copy_source():
    call = parse(lambda: client("s3").list_objects_v2(Bucket="b", Prefix="uploads/"))
    assert call.query["prefix"] == "uploads/"
    call = parse(lambda: client("s3").copy_object(Bucket="b", Key="k", CopySource={"Bucket": "b", "Key": "src"}))
    assert call.headers["x-amz-copy-source"] in ("b/src", "/b/src")


def test_presigned_urls_carry_the_signer():
    url = boto3.client("s3", endpoint_url="http://127.0.0.1:5000", region_name="us-east-1", aws_access_key_id="CreateFunction",
                       aws_secret_access_key="secret", config=Config(s3={"addressing_style": "path"})) \
        .generate_presigned_url("put_object", Params={"Bucket": "b", "Key": "uploads/x.png"})
    environ = environ_of("PUT", url, {"Content-Type": "image/png"}, b"png")
    call = calls.parse(environ, b"png")
    assert (call.operation, call.principal, call.presigned, call.key) == ("PutObject", "CreateFunction", True, "uploads/x.png")


def test_unsigned_preflight_and_gate_paths():
    environ = environ_of("OPTIONS", "http://127.0.0.1:5000/b/uploads/x.png", {"Origin": "http://x"}, b"")
    call = calls.parse(environ, b"")
    assert (call.service, call.operation, call.principal) == ("s3", "PreflightRequest", None)
    assert calls.parse(environ_of("GET", "http://127.0.0.1:5000/moto-api/config", {}, b""), b"").service == ""


@pytest.mark.parametrize("service, protocol, status, code", [
    ("dynamodb", "json", "400", "AccessDeniedException"),
    ("states", "json", "400", "AccessDeniedException"),
    ("sqs", "json", "403", "AccessDeniedException"),
    ("sqs", "query", "403", "<Code>AccessDenied</Code>"),
    ("s3", "rest-xml", "403", "<Code>AccessDenied</Code>"),
])
def test_access_denied_answers(service, protocol, status, code):
    call = calls.Call(service=service, operation="X", principal="P", protocol=protocol)
    status_line, headers, body = calls.access_denied(call, "no")
    assert status_line.startswith(status) and code in body.decode()
    assert dict(headers)["Content-Length"] == str(len(body))
    if service == "sqs" and protocol == "json":
        assert dict(headers)["x-amzn-query-error"] == "AccessDenied;Sender"


def test_head_denial_has_no_body():
    call = calls.Call(service="s3", operation="HeadObject", principal="P", method="HEAD", protocol="rest-xml")
    status_line, headers, body = calls.access_denied(call, "no")
    assert status_line.startswith("403") and body == b"" and dict(headers)["Content-Length"] == "0"


def test_body_is_read_once_and_given_again():
    # The gate hands moto the body it read (io.BytesIO): parse must not consume the environ.
    environ = environ_of("POST", "http://127.0.0.1:5000/", {"X-Amz-Target": "DynamoDB_20120810.GetItem"}, b'{"TableName":"t"}')
    body = environ["wsgi.input"].read()
    environ["wsgi.input"] = io.BytesIO(body)
    assert calls.parse(environ, body).params == {"TableName": "t"}
    assert environ["wsgi.input"].read() == body
