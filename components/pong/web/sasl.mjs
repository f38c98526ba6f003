// SASL for logging in: SCRAM (RFC 5802; SHA-1, and SHA-256/512 per RFC 7677) computed with
// WebCrypto, so the password itself never leaves the browser, and the server must prove it
// knows the password too. PLAIN, which sends the password, is used only when the server
// offers no SCRAM and the connection is encrypted (wss://) or stays on this machine.

const SCRAM = {
  "SCRAM-SHA-512": { hash: "SHA-512", bits: 512 },
  "SCRAM-SHA-256": { hash: "SHA-256", bits: 256 },
  "SCRAM-SHA-1": { hash: "SHA-1", bits: 160 },
};
// A server asking for more PBKDF2 rounds than this would freeze the page.
const MAX_ITERATIONS = 1_000_000;

export class SaslError extends Error {}

/**
 * The mechanism to use among those offered: the strongest SCRAM, else PLAIN if `plainOk`
 * (an encrypted or loopback connection), else null.
 */
export function chooseMechanism(offered, { plainOk }) {
  for (const name of Object.keys(SCRAM)) if (offered.includes(name)) return name;
  return plainOk && offered.includes("PLAIN") ? "PLAIN" : null;
}

const utf8 = (text) => new TextEncoder().encode(text);

/** Base64 of the UTF-8 of `text` (or of the bytes given). */
export function toBase64(data) {
  const bytes = typeof data === "string" ? utf8(data) : data;
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** The UTF-8 text in base64 `b64`. */
export function fromBase64(b64) {
  const binary = atob(b64.replace(/\s+/g, ""));
  return new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
}

function bytesFromBase64(b64) {
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/** The PLAIN message (RFC 4616): NUL user NUL password. */
export function plainMessage(user, password) {
  return `\u0000${user}\u0000${password.normalize("NFKC")}`;
}

function randomNonce() {
  return toBase64(crypto.getRandomValues(new Uint8Array(18)));
}

function attributes(message) {
  const out = {};
  for (const part of message.split(",")) {
    const eq = part.indexOf("=");
    if (eq === 1) out[part[0]] = part.slice(2);
  }
  return out;
}

/** One SCRAM exchange: clientFirst(), then clientFinal(serverFirst), then verify(serverFinal). */
export class Scram {
  constructor(mechanism, user, password, nonce = randomNonce()) {
    const spec = SCRAM[mechanism];
    if (!spec) throw new SaslError(`unsupported mechanism ${mechanism}`);
    this.spec = spec;
    this.password = password.normalize("NFKC");
    this.nonce = nonce;
    const name = user.replace(/=/g, "=3D").replace(/,/g, "=2C");
    this.firstBare = `n=${name},r=${nonce}`;
    this.serverSignature = null;
  }

  clientFirst() {
    return `n,,${this.firstBare}`;
  }

  async #hmac(keyBytes, text) {
    const key = await crypto.subtle.importKey("raw", keyBytes, { name: "HMAC", hash: this.spec.hash }, false, [
      "sign",
    ]);
    return new Uint8Array(await crypto.subtle.sign("HMAC", key, utf8(text)));
  }

  async clientFinal(serverFirst) {
    const a = attributes(serverFirst);
    if (a.m !== undefined) throw new SaslError("the server requires a SCRAM extension");
    const iterations = Number(a.i);
    if (!a.r?.startsWith(this.nonce) || a.r.length <= this.nonce.length || !a.s) {
      throw new SaslError("the server's SCRAM challenge is malformed");
    }
    if (!Number.isInteger(iterations) || iterations < 1 || iterations > MAX_ITERATIONS) {
      throw new SaslError(`the server asks for ${a.i} SCRAM iterations`);
    }
    const base = await crypto.subtle.importKey("raw", utf8(this.password), "PBKDF2", false, ["deriveBits"]);
    const salted = new Uint8Array(
      await crypto.subtle.deriveBits(
        { name: "PBKDF2", salt: bytesFromBase64(a.s), iterations, hash: this.spec.hash },
        base,
        this.spec.bits,
      ),
    );
    const clientKey = await this.#hmac(salted, "Client Key");
    const storedKey = new Uint8Array(await crypto.subtle.digest(this.spec.hash, clientKey));
    const withoutProof = `c=biws,r=${a.r}`;
    const authMessage = `${this.firstBare},${serverFirst},${withoutProof}`;
    const signature = await this.#hmac(storedKey, authMessage);
    const proof = clientKey.map((b, i) => b ^ signature[i]);
    const serverKey = await this.#hmac(salted, "Server Key");
    this.serverSignature = toBase64(await this.#hmac(serverKey, authMessage));
    return `${withoutProof},p=${toBase64(proof)}`;
  }

  /** Whether the server's final message proves it knows the password. */
  verify(serverFinal) {
    const a = attributes(serverFinal);
    return this.serverSignature !== null && a.v === this.serverSignature;
  }
}
