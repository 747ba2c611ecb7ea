// The book's tokenizer in the page: byte-level BPE from the shipped ranks (book.tiktoken), the same
// token ids as Python's load_book_encoding().encode(text, allowed_special="all").
//
// - Pre-tokenizer: GPT-2's regex as nexttoken.tokenizer.R50K_PAT writes it, in JavaScript: no
//   possessive quantifiers (nothing in the pattern backtracks into them, so the pieces are the same)
//   and \s spelled \p{White_Space} (JavaScript's \s also matches U+FEFF and misses U+0085, the Rust
//   regex tiktoken uses does the opposite).
// - Merges: within each piece, the adjacent pair whose concatenation has the lowest rank is merged
//   first, the leftmost on a tie, until no pair is a token (tiktoken's byte-pair merge).
// - Special token: every "<|endoftext|>" in the text is that token (allowed_special="all").
// Loaded by nt-model.js; defines window.NtBpe = { Encoding, sha256Hex, ValueError }.
(function () {
  "use strict";

  class ValueError extends Error {
    constructor(message) {
      super(message);
      this.name = "ValueError";
    }
  }

  const WS = "\\p{White_Space}";
  const PIECES = new RegExp(
    [
      "'(?:[sdmt]|ll|ve|re)",
      " ?\\p{L}+",
      " ?\\p{N}+",
      ` ?[^${WS}\\p{L}\\p{N}]+`,
      `${WS}+$`,
      `${WS}+(?!\\P{White_Space})`,
      WS,
    ].join("|"),
    "gu",
  );
  const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

  function latin1(bytes) {
    let s = "";
    for (let i = 0; i < bytes.length; i += 8192) {
      s += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
    }
    return s;
  }

  class Encoding {
    // ranksText: the .tiktoken file's text ("base64 rank" per line); special: {text: id}.
    constructor(ranksText, special) {
      this.ranks = new Map(); // token bytes as a latin-1 string -> rank
      this.bytesOf = []; // rank -> Uint8Array
      for (const line of ranksText.split("\n")) {
        if (!line) continue;
        const [b64, rankText] = line.split(" ");
        const key = atob(b64);
        const rank = Number(rankText);
        this.ranks.set(key, rank);
        this.bytesOf[rank] = Uint8Array.from(key, (c) => c.charCodeAt(0));
      }
      this.nRanks = this.bytesOf.length;
      this.special = new Map(Object.entries(special));
      for (const [text, id] of this.special) {
        this.bytesOf[id] = new TextEncoder().encode(text);
      }
      this.nVocab = this.bytesOf.length;
      this.utf8 = new TextEncoder();
      this.decoder = new TextDecoder("utf-8"); // invalid bytes -> U+FFFD, as errors="replace"
    }

    // A piece's bytes (latin-1 string) -> token ids, merging the lowest-ranked pair first.
    mergePiece(piece) {
      const whole = this.ranks.get(piece);
      if (whole !== undefined) return [whole];
      const parts = Array.from(piece);
      for (;;) {
        let best = -1;
        let bestRank = Infinity;
        for (let i = 0; i + 1 < parts.length; i++) {
          const r = this.ranks.get(parts[i] + parts[i + 1]);
          if (r !== undefined && r < bestRank) {
            bestRank = r;
            best = i;
          }
        }
        if (best < 0) break;
        parts.splice(best, 2, parts[best] + parts[best + 1]);
      }
      return parts.map((p) => this.ranks.get(p));
    }

    encodeOrdinary(text, out) {
      for (const m of text.matchAll(PIECES)) {
        const ids = this.mergePiece(latin1(this.utf8.encode(m[0])));
        for (const id of ids) out.push(id);
      }
      return out;
    }

    // text -> token ids; the special tokens' texts become those tokens.
    encode(text) {
      if (typeof text !== "string") {
        throw new TypeError(`text must be a string, got ${text === null ? "null" : typeof text}`);
      }
      const bad = LONE_SURROGATE.exec(text);
      if (bad) {
        const code = text.charCodeAt(bad.index).toString(16).toUpperCase();
        throw new ValueError(
          `text has a lone surrogate U+${code} at index ${bad.index}: it is not valid Unicode ` +
            "text (it has no UTF-8 bytes), so it cannot be encoded",
        );
      }
      const out = [];
      let rest = text;
      for (;;) {
        let at = -1;
        let found = null;
        for (const s of this.special.keys()) {
          const i = rest.indexOf(s);
          if (i >= 0 && (at < 0 || i < at)) {
            at = i;
            found = s;
          }
        }
        if (found === null) break;
        this.encodeOrdinary(rest.slice(0, at), out);
        out.push(this.special.get(found));
        rest = rest.slice(at + found.length);
      }
      return this.encodeOrdinary(rest, out);
    }

    checkIds(ids) {
      if (!Array.isArray(ids) && !ArrayBuffer.isView(ids)) {
        throw new TypeError(`ids must be an array of token ids, got ${typeof ids}`);
      }
      for (const id of ids) {
        if (typeof id !== "number" || !Number.isInteger(id)) {
          throw new TypeError(`token ids must be integers, got ${typeof id} ${String(id)}`);
        }
        if (id < 0 || id >= this.nVocab) {
          throw new ValueError(
            `token id ${id} is out of range: ids must be in [0, ${this.nVocab - 1}]`,
          );
        }
      }
      return ids;
    }

    // token ids -> the bytes they stand for, decoded as UTF-8 (invalid bytes become U+FFFD)
    decode(ids) {
      this.checkIds(ids);
      let n = 0;
      for (const id of ids) n += this.bytesOf[id].length;
      const bytes = new Uint8Array(n);
      let at = 0;
      for (const id of ids) {
        bytes.set(this.bytesOf[id], at);
        at += this.bytesOf[id].length;
      }
      return this.decoder.decode(bytes);
    }
  }

  // SHA-256 of bytes as hex, in plain JavaScript (crypto.subtle exists only in secure contexts).
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

  function sha256Plain(bytes) {
    const n = bytes.length;
    const padded = new Uint8Array(((n + 9 + 63) >> 6) << 6);
    padded.set(bytes);
    padded[n] = 0x80;
    const view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(n / 0x20000000));
    view.setUint32(padded.length - 4, (n << 3) >>> 0);
    const h = new Uint32Array([
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]);
    const w = new Uint32Array(64);
    const rotr = (x, k) => (x >>> k) | (x << (32 - k));
    for (let off = 0; off < padded.length; off += 64) {
      for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + 4 * i);
      for (let i = 16; i < 64; i++) {
        const a = w[i - 15];
        const b = w[i - 2];
        const s0 = rotr(a, 7) ^ rotr(a, 18) ^ (a >>> 3);
        const s1 = rotr(b, 17) ^ rotr(b, 19) ^ (b >>> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
      }
      let [a, b, c, d, e, f, g, hh] = h;
      for (let i = 0; i < 64; i++) {
        const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
        const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
        hh = g;
        g = f;
        f = e;
        e = (d + t1) | 0;
        d = c;
        c = b;
        b = a;
        a = (t1 + t2) | 0;
      }
      h[0] += a;
      h[1] += b;
      h[2] += c;
      h[3] += d;
      h[4] += e;
      h[5] += f;
      h[6] += g;
      h[7] += hh;
    }
    return Array.from(h, (x) => x.toString(16).padStart(8, "0")).join("");
  }

  async function sha256Hex(bytes) {
    if (window.crypto && window.crypto.subtle) {
      const digest = await window.crypto.subtle.digest("SHA-256", bytes);
      return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
    }
    return sha256Plain(bytes);
  }

  window.NtBpe = { Encoding, sha256Hex, sha256Plain, ValueError };
})();
