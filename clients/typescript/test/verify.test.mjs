// The notification signature helper, offline.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { verifyNotification, SignatureError } from "../dist/index.js";

// The Standard Webhooks specification's own example.
const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const headers = {
  "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
  "webhook-timestamp": "1614265330",
  "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
};
const body = '{"test": 2432232314}';

test("the specification's example verifies", () => {
  assert.deepEqual(verifyNotification(secret, headers, body, { now: 1614265330 }), { test: 2432232314 });
});

test("a tampered body, another secret, a stale timestamp or no signature is refused", () => {
  assert.throws(() => verifyNotification(secret, headers, body.replace("2", "3"), { now: 1614265330 }), SignatureError);
  assert.throws(() => verifyNotification("whsec_" + Buffer.from("another key").toString("base64"), headers, body, { now: 1614265330 }), SignatureError);
  assert.throws(() => verifyNotification(secret, headers, body, { now: 1614265330 + 301 }), /timestamp/);
  assert.throws(() => verifyNotification(secret, { ...headers, "webhook-signature": undefined }, body, { now: 1614265330 }), /missing/);
});

test("during a rotation either of two signatures verifies", () => {
  const old = Buffer.from("old secret key bytes").toString("base64");
  const mine = createHmac("sha256", Buffer.from(old, "base64")).update(`${headers["webhook-id"]}.${headers["webhook-timestamp"]}.${body}`).digest("base64");
  const both = { ...headers, "webhook-signature": `v1,AAAA v1,${mine}` };
  assert.deepEqual(verifyNotification("whsec_" + old, both, body, { now: 1614265330 }), { test: 2432232314 });
  assert.throws(() => verifyNotification("whsec_" + old, { ...both, "webhook-signature": "v2," + mine }, body, { now: 1614265330 }), SignatureError);
});
