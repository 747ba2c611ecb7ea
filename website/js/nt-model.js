// The book model in the reader's browser: ONNX Runtime Web (WebAssembly, one thread) runs the
// exported graph (src/nexttoken/onnx_export.py), nt-bpe.js is the tokenizer. One <script> tag:
//
//   <script src="<site root>/_static/live/nt-model.js"></script>
//
// defines window.nexttoken; everything else (manifest.json, nt-bpe.js, ort.wasm.min.js, the wasm,
// book.tiktoken, book.onnx) is loaded from the same folder, only when a page first reads
// nexttoken.ready (so a page that never uses the model downloads nothing). The API:
//
//   ready                      Promise of {vocabSize, blockSize, nLayer, nHead, endOfText}; rejects
//                              with a readable Error (no WebAssembly, a file missing or changed)
//   status, error              "idle" | "loading" | "ready" | "failed", and the error message
//   timings                    ms from the start of loading to: files loaded, files checked, session
//   encode(text) -> ids        as Python's load_book_encoding().encode(text, allowed_special="all")
//   decode(ids) -> text
//   nextTokenProbs(ids, {temperature = 1, topK = null, topP = null}) -> Promise<Float32Array(V)>
//                              nexttoken.sampling.filtered_probs of the next-token logits
//   logits(ids) -> Promise<Float32Array(V)>
//   generate(ids, {maxNewTokens, temperature = 1, topK, topP, seed, useCache = true, onToken})
//                              -> Promise<number[]> (prompt + continuation; temperature 0 = greedy)
//   attention(ids, layer, head) -> Promise<number[][]>   weights (N x N), row = query
//
// The model runs asynchronously, so nextTokenProbs, logits and attention return Promises (await
// them). Bad input throws (or rejects with) a TypeError or a nexttoken.ValueError whose message
// names the problem and the allowed values, as the Python package does.
//
// Equal to Python: the same ids; greedy tokens equal generate(model, ids, n, temperature=0); the
// sampling rules of nexttoken.sampling (temperature, then top-k, then top-p; ties at the k-th
// logit kept; the top token always kept by top-p). Past block_size tokens the model reads the last
// block_size (the sliding window of nexttoken.generate, recomputed at every step). A seeded draw is
// reproducible here, but its random stream is not torch's: the same seed does not give the tokens
// Python's torch.Generator gives.
(function () {
  "use strict";

  if (window.nexttoken) return; // included twice on one page: the first one serves both
  const script = document.currentScript;
  const BASE = new URL(".", script ? script.src : window.location.href).href;

  class ValueError extends Error {
    constructor(message) {
      super(message);
      this.name = "ValueError";
    }
  }

  let loading = null; // the ready promise, made on first use
  let cfg = null;
  let bpe = null;
  let session = null;
  let queue = Promise.resolve(); // runs one at a time (a session runs one call at a time)
  let cached = null; // {ids, present, logits, attentions}: the last run's tokens and outputs

  const api = {
    status: "idle",
    error: null,
    timings: {}, // milliseconds from the start of loading to each stage
    config: null,
    ValueError,
    encode,
    decode,
    nextTokenProbs,
    logits,
    generate,
    attention,
    filteredProbs,
  };
  Object.defineProperty(api, "ready", { enumerable: true, get: start });
  window.nexttoken = api;

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = resolve;
      s.onerror = () => reject(new Error(`could not load ${src}`));
      document.head.appendChild(s);
    });
  }

  async function fetchOk(name) {
    const response = await fetch(BASE + name);
    if (!response.ok) throw new Error(`could not load ${name} (HTTP ${response.status})`);
    return response;
  }

  async function fetchBytes(name) {
    return new Uint8Array(await (await fetchOk(name)).arrayBuffer());
  }

  async function check(entry, bytes) {
    const got = await window.NtBpe.sha256Hex(bytes);
    if (got !== entry.sha256) {
      throw new Error(`${entry.file} was changed: its sha256 is ${got}, expected ${entry.sha256}`);
    }
  }

  function start() {
    if (loading) return loading;
    api.status = "loading";
    loading = load().then(
      (config) => {
        api.status = "ready";
        api.config = config;
        return config;
      },
      (err) => {
        api.status = "failed";
        api.error = err.message;
        throw err;
      },
    );
    loading.catch(() => {}); // the failure is kept in status/error; callers see it when awaiting
    return loading;
  }

  async function load() {
    if (typeof WebAssembly !== "object" || typeof WebAssembly.instantiate !== "function") {
      throw new Error(
        "WebAssembly is not available in this browser, so the book model cannot run here",
      );
    }
    const t0 = performance.now();
    const lap = (name) => (api.timings[name] = Math.round(performance.now() - t0));
    const manifest = await (await fetchOk("manifest.json")).json();
    // every file at once, before any check or compile: a page's downloads end together (a page
    // left early never has one in flight), and the runtime reads the wasm and its module from here
    const [ranks, model, wasm] = await Promise.all([
      fetchBytes(manifest.ranks.file),
      fetchBytes(manifest.model.file),
      fetchBytes(manifest.wasm.file),
      loadScript(BASE + "nt-bpe.js"),
      loadScript(BASE + manifest.runtime),
      import(BASE + manifest.wasmModule), // the same URL the runtime imports: loaded once
    ]);
    lap("files loaded");
    await Promise.all([
      check(manifest.ranks, ranks),
      check(manifest.model, model),
      check(manifest.wasm, wasm),
    ]);
    lap("files checked");
    bpe = new window.NtBpe.Encoding(new TextDecoder().decode(ranks), manifest.special);
    const ort = window.ort;
    ort.env.wasm.wasmPaths = BASE;
    ort.env.wasm.wasmBinary = wasm; // checked above: the runtime does not fetch it again
    ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which a static host lacks
    ort.env.wasm.proxy = false;
    ort.env.logLevel = "error";
    session = await ort.InferenceSession.create(model, {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "basic", // "all" takes 0.4 s longer to load, runs no faster here
    });
    lap("session");
    cfg = manifest.config;
    return { ...cfg };
  }

  function needReady() {
    if (!session) {
      const why = api.error ? `it failed to load: ${api.error}` : "await nexttoken.ready first";
      throw new Error(`the book model is not loaded yet (${why})`);
    }
  }

  function encode(text) {
    needReady();
    return bpe.encode(text);
  }

  function decode(ids) {
    needReady();
    return bpe.decode(ids);
  }

  function checkPrompt(ids) {
    needReady();
    if (!Array.isArray(ids)) {
      throw new TypeError(`ids must be an array of token ids (numbers), got ${typeof ids}`);
    }
    if (ids.length === 0) {
      throw new ValueError("the prompt is empty: give at least one token id");
    }
    for (const id of ids) {
      if (typeof id !== "number" || !Number.isInteger(id)) {
        throw new TypeError(`ids must be integers (token ids), got ${typeof id} ${String(id)}`);
      }
      if (id < 0 || id >= cfg.vocabSize) {
        throw new ValueError(
          `token id ${id} is out of range: ids must be in [0, ${cfg.vocabSize - 1}]`,
        );
      }
    }
    return ids;
  }

  // nexttoken.sampling.check_sampling_args, with JavaScript's names
  function checkSampling({ temperature = 1, topK = null, topP = null } = {}) {
    if (typeof temperature !== "number") {
      throw new TypeError(`temperature must be a number, got ${typeof temperature}`);
    }
    if (!Number.isFinite(temperature) || temperature < 0) {
      throw new ValueError(
        `temperature must be a finite number >= 0 (0 = greedy), got ${temperature}`,
      );
    }
    if (topK !== null && topK !== undefined) {
      if (typeof topK !== "number" || !Number.isInteger(topK)) {
        throw new TypeError(`topK must be an integer or null, got ${typeof topK} ${topK}`);
      }
      if (topK < 1 || topK > cfg.vocabSize) {
        throw new ValueError(
          `topK must be in [1, ${cfg.vocabSize}] (the vocabulary size), got ${topK}`,
        );
      }
    }
    if (topP !== null && topP !== undefined) {
      if (typeof topP !== "number") {
        throw new TypeError(`topP must be a number or null, got ${typeof topP}`);
      }
      if (!(topP > 0 && topP <= 1)) throw new ValueError(`topP must be in (0, 1], got ${topP}`);
    }
    return { temperature, topK: topK ?? null, topP: topP ?? null };
  }

  function exclusive(fn) {
    const result = queue.then(fn);
    queue = result.catch(() => {});
    return result;
  }

  function samePrefix(a, b, n) {
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  // One pass of the graph over `context` (<= blockSize ids), reusing the keys and values of the
  // last run when it read a prefix of `context` (and `reuse` allows it). Returns the last run.
  async function run(context, reuse) {
    const ort = window.ort;
    let past = null;
    let start = 0;
    if (reuse && cached && cached.ids.length <= context.length) {
      if (samePrefix(cached.ids, context, cached.ids.length)) {
        if (cached.ids.length === context.length) return cached;
        past = cached.present;
        start = cached.ids.length;
      }
    }
    if (!past) {
      const dims = [cfg.nLayer, 2, cfg.nHead, 0, cfg.dHead];
      past = new ort.Tensor("float32", new Float32Array(0), dims);
    }
    const fresh = context.slice(start);
    const ids = new ort.Tensor("int64", BigInt64Array.from(fresh, BigInt), [1, fresh.length]);
    const out = await session.run({ ids, past });
    cached = {
      ids: context.slice(),
      present: out.present,
      logits: out.logits.data,
      attentions: start === 0 ? out.attentions : null, // (L, H, N, N) when read from the start
    };
    return cached;
  }

  // the model reads at most blockSize tokens: the last ones (nexttoken.generate's sliding window)
  function window_(ids) {
    return ids.length > cfg.blockSize ? ids.slice(ids.length - cfg.blockSize) : ids;
  }

  function logits(ids) {
    try {
      checkPrompt(ids);
    } catch (err) {
      return Promise.reject(err);
    }
    return exclusive(async () => Float32Array.from((await run(window_(ids), true)).logits));
  }

  function nextTokenProbs(ids, options = {}) {
    let s;
    try {
      checkPrompt(ids);
      s = checkSampling(options);
    } catch (err) {
      return Promise.reject(err);
    }
    return exclusive(async () => {
      const out = await run(window_(ids), true);
      return filteredProbs(out.logits, s.temperature, s.topK, s.topP);
    });
  }

  function attention(ids, layer, head) {
    try {
      checkPrompt(ids);
      for (const [name, value, n] of [
        ["layer", layer, cfg.nLayer],
        ["head", head, cfg.nHead],
      ]) {
        if (typeof value !== "number" || !Number.isInteger(value)) {
          throw new TypeError(`${name} must be an integer, got ${typeof value} ${value}`);
        }
        if (value < 0 || value >= n) {
          throw new ValueError(`${name} must be in [0, ${n - 1}], got ${value}`);
        }
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return exclusive(async () => {
      const context = window_(ids);
      let out = await run(context, true);
      if (!out.attentions) out = await run(context, false);
      const N = context.length;
      const data = out.attentions.data; // (L, H, N, N)
      const at = (layer * cfg.nHead + head) * N * N;
      const rows = [];
      for (let i = 0; i < N; i++) rows.push(Array.from(data.subarray(at + i * N, at + (i + 1) * N)));
      return rows;
    });
  }

  // ---- sampling: nexttoken.sampling, on one row of logits -------------------------------------

  function softmaxInto(z) {
    let max = -Infinity;
    for (const v of z) if (v > max) max = v;
    const p = new Float64Array(z.length);
    let sum = 0;
    for (let i = 0; i < z.length; i++) {
      p[i] = Math.exp(z[i] - max);
      sum += p[i];
    }
    for (let i = 0; i < z.length; i++) p[i] /= sum;
    return p;
  }

  function argmax(z) {
    let best = 0;
    for (let i = 1; i < z.length; i++) if (z[i] > z[best]) best = i; // ties: the lowest id
    return best;
  }

  // logits / T in float32, as torch divides a float32 tensor; where that overflows, the same
  // softmax from (s - max s) / T in float64 (sampling._scaled)
  function scaled(logits, temperature) {
    if (temperature === 1) return Float64Array.from(logits);
    const z = new Float64Array(logits.length);
    let max = -Infinity;
    for (let i = 0; i < z.length; i++) {
      z[i] = Math.fround(logits[i] / temperature);
      if (z[i] > max) max = z[i];
    }
    if (Number.isFinite(max)) return z;
    let top = -Infinity;
    for (const v of logits) if (v > top) top = v;
    for (let i = 0; i < z.length; i++) z[i] = (logits[i] - top) / temperature;
    return z;
  }

  // keep the k highest; ties at the k-th value all kept (sampling._top_k)
  function topKFilter(z, k) {
    const kth = Float64Array.from(z).sort().reverse()[k - 1];
    for (let i = 0; i < z.length; i++) if (z[i] < kth) z[i] = -Infinity;
  }

  // drop a token when the tokens ranked above it already reach p; the top one always stays
  // (sampling._top_p; equal logits are ranked by id)
  function topPFilter(z, p) {
    const order = Array.from(z.keys()).sort((a, b) => z[b] - z[a] || a - b);
    const probs = softmaxInto(Float64Array.from(order, (i) => z[i]));
    let before = 0;
    for (let r = 0; r < order.length; r++) {
      if (r > 0 && before >= p) z[order[r]] = -Infinity;
      before += probs[r];
    }
  }

  // the distribution sampled from: temperature, then top-k, then top-p, then softmax
  // (sampling.filtered_probs; temperature 0 = the greedy token's one-hot)
  function filteredProbs(logits, temperature = 1, topK = null, topP = null) {
    const out = new Float32Array(logits.length);
    if (temperature === 0) {
      out[argmax(logits)] = 1;
      return out;
    }
    const z = scaled(logits, temperature);
    if (topK !== null) topKFilter(z, topK);
    if (topP !== null) topPFilter(z, topP);
    out.set(softmaxInto(z));
    return out;
  }

  // A seeded generator (xoshiro128**, seeded through splitmix32): reproducible in the page; not
  // torch's random stream.
  function rng(seed) {
    let x = seed >>> 0;
    let y = Math.floor(seed / 0x100000000) >>> 0;
    const mix = () => {
      x = (x + 0x9e3779b9) | 0;
      let z = x ^ y;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    const s = [mix(), mix(), mix(), mix()];
    const rotl = (v, k) => (v << k) | (v >>> (32 - k));
    const next = () => {
      const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
      const t = s[1] << 9;
      s[2] ^= s[0];
      s[3] ^= s[1];
      s[1] ^= s[2];
      s[0] ^= s[3];
      s[2] ^= t;
      s[3] = rotl(s[3], 11);
      return result;
    };
    return () => (next() * 0x200000 + (next() >>> 11)) / 2 ** 53; // uniform in [0, 1)
  }

  function draw(probs, uniform) {
    let total = 0;
    for (const p of probs) total += p;
    const u = uniform() * total;
    let cumulative = 0;
    let last = 0;
    for (let i = 0; i < probs.length; i++) {
      if (probs[i] > 0) {
        cumulative += probs[i];
        last = i;
        if (cumulative > u) return i;
      }
    }
    return last;
  }

  function checkGenerate(options) {
    const { maxNewTokens, seed, useCache = true, onToken = null } = options;
    if (typeof maxNewTokens !== "number" || !Number.isInteger(maxNewTokens)) {
      throw new TypeError(`maxNewTokens must be an integer, got ${typeof maxNewTokens}`);
    }
    if (maxNewTokens < 0 || maxNewTokens > 100000) {
      throw new ValueError(`maxNewTokens must be in [0, 100000], got ${maxNewTokens}`);
    }
    if (seed !== undefined && seed !== null && !(Number.isSafeInteger(seed) && seed >= 0)) {
      throw new ValueError(`seed must be an integer >= 0 (or null for a random one), got ${seed}`);
    }
    if (typeof useCache !== "boolean") {
      throw new TypeError(`useCache must be true or false, got ${useCache}`);
    }
    if (onToken !== null && typeof onToken !== "function") {
      throw new TypeError("onToken must be a function called with each new id, or null");
    }
    return { maxNewTokens, seed, useCache, onToken };
  }

  // nexttoken.generate.generate: prompt + maxNewTokens tokens; with useCache each step feeds only
  // the new token until the context is full, then every step recomputes the last blockSize tokens
  function generate(ids, options = {}) {
    let g;
    let s;
    try {
      checkPrompt(ids);
      s = checkSampling(options);
      g = checkGenerate(options);
    } catch (err) {
      return Promise.reject(err);
    }
    return exclusive(async () => {
      const seed = g.seed ?? Math.floor(Math.random() * 2 ** 32);
      const uniform = rng(seed);
      const buf = ids.slice();
      for (let step = 0; step < g.maxNewTokens; step++) {
        const useCache = g.useCache && buf.length <= cfg.blockSize;
        const out = await run(window_(buf), useCache);
        const next =
          s.temperature === 0
            ? argmax(out.logits)
            : draw(filteredProbs(out.logits, s.temperature, s.topK, s.topP), uniform);
        buf.push(next);
        if (g.onToken) g.onToken(next);
      }
      return buf;
    });
  }
})();
