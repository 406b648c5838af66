// What the controller and editor tests share: a completer whose answers the test holds and
// releases, and a completion as the worker returns it.

/** A completer whose requests wait until the test answers them. */
export function fakeCompleter() {
  const calls = [];
  return {
    backend: "cpu",
    calls,
    complete(req) {
      return new Promise((resolve, reject) => {
        const call = { req, resolve, reject, aborted: false };
        req.signal?.addEventListener("abort", () => {
          call.aborted = true;
          reject(Object.assign(new Error("aborted"), { code: "aborted" }));
        });
        calls.push(call);
      });
    },
  };
}

export const completion = (texts, timings = {}) => ({
  candidates: texts.map((text, i) => ({ text, meanLogprob: -0.1 * (i + 1) })),
  timings: { promptTokens: 10, reusedTokens: 0, evaluatedTokens: 10, generatedTokens: 8, promptMs: 5, decodeMs: 100, totalMs: 105, cacheHit: false, mode: "line", stop: null, ...timings },
});
