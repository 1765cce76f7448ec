// The license key rule of mqtt_licensing/core/keys.py (normalize_key), in the browser,
// so a typo is caught as the operator types. tests/web/test_keys_js.py proves both agree.
// SHA-256 is written out here: crypto.subtle exists only on https:// or localhost pages,
// and the page is usually served over plain http inside a plant network.

const PREFIX = "MQL1";
const BODY_CHARS = 24;
const CHECK_CHARS = 6;
const RANDOM_BYTES = 15;
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const DECODE = new Map([...ALPHABET].map((c, i) => [c, i]));
DECODE.set("O", 0); DECODE.set("I", 1); DECODE.set("L", 1);
// Python's str.isspace(), character for character (JavaScript's \s differs).
const PY_SPACE = new Set([
  "\t", "\n", "\v", "\f", "\r", "\x1c", "\x1d", "\x1e", "\x1f", " ", "\x85", "\xa0",
  "\u1680", "\u2000", "\u2001", "\u2002", "\u2003", "\u2004", "\u2005", "\u2006", "\u2007",
  "\u2008", "\u2009", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000",
]);

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

export function sha256(bytes) {
  const bitLength = bytes.length * 8;
  const padded = new Uint8Array(((bytes.length + 9 + 63) >> 6) << 6);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLength / 2 ** 32));
  view.setUint32(padded.length - 4, bitLength >>> 0);
  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + 4 * i);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  h.forEach((word, i) => outView.setUint32(4 * i, word));
  return out;
}

// Crockford base32, most significant bit first, zero bits padding the last character.
export function b32encode(bytes) {
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const byte of bytes) {
    acc = ((acc << 8) | byte) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(acc >> bits) & 31];
    }
  }
  if (bits > 0) out += ALPHABET[(acc << (5 - bits)) & 31];
  return out;
}

function b32decodeExact(text, nbytes) {
  const out = new Uint8Array(nbytes);
  let acc = 0;
  let bits = 0;
  let n = 0;
  for (const ch of text) {
    const value = DECODE.get(ch);
    if (value === undefined) throw new Error(`character '${ch}' is not base32`);
    acc = ((acc << 5) | value) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (acc >> bits) & 0xff;
    }
  }
  return out;
}

function checksum(label, data, nchars) {
  const labelBytes = new TextEncoder().encode(label);
  const input = new Uint8Array(labelBytes.length + 1 + data.length);
  input.set(labelBytes);
  input.set(data, labelBytes.length + 1);
  return b32encode(sha256(input)).slice(0, nchars);
}

function formatKey(raw) {
  const chars = b32encode(raw) + checksum("license-key", raw, CHECK_CHARS);
  const groups = [];
  for (let i = 0; i < chars.length; i += 5) groups.push(chars.slice(i, i + 5));
  return `${PREFIX}-${groups.join("-")}`;
}

// {ok: true, key: canonical form} or {ok: false, message}; the same verdicts as normalize_key.
export function checkKey(text) {
  const compact = [...String(text).toUpperCase()].filter((ch) => !PY_SPACE.has(ch) && ch !== "-").join("");
  if (!compact.startsWith(PREFIX)) return { ok: false, message: `a license key starts with ${PREFIX}-` };
  const chars = [...compact.slice(PREFIX.length)];
  if (chars.length !== BODY_CHARS + CHECK_CHARS) {
    return {
      ok: false,
      message: `a license key has ${BODY_CHARS + CHECK_CHARS} characters after ${PREFIX}-, this one has ${chars.length}`,
    };
  }
  let raw;
  try {
    raw = b32decodeExact(chars.slice(0, BODY_CHARS), RANDOM_BYTES);
  } catch (err) {
    return { ok: false, message: `the license key contains a bad character (${err.message})` };
  }
  const check = chars.slice(BODY_CHARS).join("").replace(/O/g, "0").replace(/[IL]/g, "1");
  if (checksum("license-key", raw, CHECK_CHARS) !== check) {
    return { ok: false, message: "the license key checksum does not match: check for a typo" };
  }
  return { ok: true, key: formatKey(raw) };
}
