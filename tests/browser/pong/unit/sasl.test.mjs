// node --test: SCRAM against the RFC test vectors, and which mechanism the page picks.
import assert from "node:assert/strict";
import test from "node:test";

import { Scram, chooseMechanism, fromBase64, plainMessage, toBase64 } from "../../../../components/pong/web/sasl.mjs";

test("SCRAM-SHA-1 matches RFC 5802's example", async () => {
  const scram = new Scram("SCRAM-SHA-1", "user", "pencil", "fyko+d2lbbFgONRv9qkxdawL");
  assert.equal(scram.clientFirst(), "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
  const final = await scram.clientFinal("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096");
  assert.equal(final, "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=");
  assert.ok(scram.verify("v=rmF9pqV8S7suAoZWja4dJRkFsKQ="));
  assert.ok(!scram.verify("v=AAAAAAAAAAAAAAAAAAAAAAAAAAA="), "a server that does not know the password is refused");
  assert.ok(!scram.verify("e=other-error"));
});

test("SCRAM-SHA-256 matches RFC 7677's example", async () => {
  const scram = new Scram("SCRAM-SHA-256", "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
  const final = await scram.clientFinal(
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  assert.equal(final,
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
  assert.ok(scram.verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="));
});

test("a SCRAM challenge that is not ours, or too costly, is refused", async () => {
  const scram = () => new Scram("SCRAM-SHA-1", "user", "pencil", "abc");
  await assert.rejects(scram().clientFinal("r=xyz123,s=QSXCR+Q6sek8bf92,i=4096"), /malformed/);
  await assert.rejects(scram().clientFinal("r=abc,s=QSXCR+Q6sek8bf92,i=4096"), /malformed/, "no server nonce");
  await assert.rejects(scram().clientFinal("r=abcdef,s=QSXCR+Q6sek8bf92,i=100000000"), /iterations/);
  await assert.rejects(scram().clientFinal("r=abcdef,s=QSXCR+Q6sek8bf92,i=0"), /iterations/);
  await assert.rejects(scram().clientFinal("m=ext,r=abcdef,s=QSXCR+Q6sek8bf92,i=4096"), /extension/);
});

test("usernames are escaped, passwords and texts are UTF-8", () => {
  assert.equal(new Scram("SCRAM-SHA-1", "a=b,c", "p", "n").clientFirst(), "n,,n=a=3Db=2Cc,r=n");
  assert.equal(fromBase64(toBase64("pässwörd 🏓")), "pässwörd 🏓");
  assert.equal(toBase64(plainMessage("alice", "alicepw")), "AGFsaWNlAGFsaWNlcHc=", "as in the reference log");
});

test("the strongest SCRAM is chosen; PLAIN only where the password cannot be overheard", () => {
  const ejabberd = ["PLAIN", "SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1"];
  assert.equal(chooseMechanism(ejabberd, { plainOk: true }), "SCRAM-SHA-512");
  assert.equal(chooseMechanism(["SCRAM-SHA-1", "PLAIN"], { plainOk: true }), "SCRAM-SHA-1");
  assert.equal(chooseMechanism(["PLAIN"], { plainOk: true }), "PLAIN");
  assert.equal(chooseMechanism(["PLAIN"], { plainOk: false }), null);
  assert.equal(chooseMechanism(["DIGEST-MD5", "X-OAUTH2"], { plainOk: true }), null);
});
