// How the memory tests measure a load: the peak of the worker's JS heap (CDP
// Runtime.getHeapUsage on the worker target, sampled every 20 ms: used size + array buffer
// backing stores) and the peak resident memory (VmHWM) of Chromium's processes by type, less
// their resident memory before the load.
import fs from "node:fs";

/** Chromium processes of `type` ("renderer", "gpu-process"): pid → {rss, hwm} in bytes. */
export function processes(type = "renderer") {
  const out = new Map();
  for (const pid of fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    let cmd, status;
    try {
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (!cmd.includes(`--type=${type}`)) continue;
      status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    } catch { continue; }
    const kb = (k) => Number(status.match(new RegExp(`${k}:\\s+(\\d+) kB`))?.[1] ?? 0) * 1024;
    out.set(pid, { rss: kb("VmRSS"), hwm: kb("VmHWM") });
  }
  return out;
}

/** The largest peak growth of one process between two `processes()` snapshots. */
export function peakGrowth(before, after) {
  let grew = 0;
  for (const [pid, a] of after) grew = Math.max(grew, a.hwm - (before.get(pid)?.rss ?? 0));
  return grew;
}

/**
 * Starts sampling the JS heap of the page's workers (through the page's CDP session,
 * non-flat auto-attach). `stop()` ends it and returns {peak, samples}; `cdp` is the session.
 */
export async function watchWorkerHeap(context, page) {
  const cdp = await context.newCDPSession(page);
  await cdp.send("Performance.enable");
  const workers = new Set();
  const answers = new Map();
  let nextId = 1;
  cdp.on("Target.attachedToTarget", (e) => e.targetInfo.type === "worker" && workers.add(e.sessionId));
  cdp.on("Target.receivedMessageFromTarget", (e) => {
    const m = JSON.parse(e.message);
    answers.get(m.id)?.(m);
    answers.delete(m.id);
  });
  await cdp.send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
  const heapUsage = (sessionId) => new Promise((resolve) => {
    const id = nextId++;
    answers.set(id, resolve);
    cdp.send("Target.sendMessageToTarget", { sessionId, message: JSON.stringify({ id, method: "Runtime.getHeapUsage" }) }).catch(() => resolve({}));
  });
  let peak = 0, samples = 0;
  const poll = setInterval(async () => {
    for (const sid of workers) {
      const u = (await heapUsage(sid)).result;
      if (u) {
        samples++;
        peak = Math.max(peak, u.usedSize + (u.backingStorageSize ?? 0));
      }
    }
  }, 20);
  return { cdp, stop: () => { clearInterval(poll); return { peak, samples }; } };
}
