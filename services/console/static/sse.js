// Server-Sent Events over fetch(): EventSource cannot send an Authorization header.
// A stream ends after an hour or when a service restarts; the board reconnects.

import { ApiError, readJson, send, session } from "./api.js";

const MAX_BACKOFF_MS = 10_000;

// The events of a text/event-stream body (the WHATWG parsing rules, without ids).
export async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let type = "";
  let data = [];
  let retry = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      for (let end = buffer.search(/\r\n|\r|\n/); end >= 0; end = buffer.search(/\r\n|\r|\n/)) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
        if (line === "") {
          if (data.length > 0) yield { type: type || "message", data: data.join("\n"), retry };
          type = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "event") type = text;
        else if (field === "data") data.push(text);
        else if (field === "retry" && /^\d+$/.test(text)) retry = Number(text);
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

// Reads `path` until `signal` aborts: onFigures(object) for each reading, onState(state,
// error) with "open", "unavailable" (a reading failed, the stream goes on),
// "reconnecting" or "failed" (a refusal no retry will change: 400, 403, 404).
export async function follow(path, { signal, onFigures, onState }) {
  let wait = 1000;
  let failures = 0;
  while (!signal.aborted) {
    try {
      const response = await send("GET", path, { signal, accept: "text/event-stream" });
      if (!response.ok) {
        const error = new ApiError(response.status, await readJson(response));
        if ([400, 403, 404].includes(response.status)) {
          onState("failed", error);
          return;
        }
        throw error;
      }
      failures = 0;
      onState("open");
      for await (const event of events(response.body)) {
        if (event.retry !== null) wait = event.retry;
        if (event.type === "figures") {
          onState("open");
          onFigures(JSON.parse(event.data));
        } else if (event.type === "unavailable") {
          onState("unavailable");
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (!session()) {
        onState("failed", error);
        return;
      }
      failures += 1;
      onState("reconnecting", error);
    }
    if (signal.aborted) return;
    onState("reconnecting");
    await sleep(Math.min(MAX_BACKOFF_MS, wait * 2 ** Math.min(failures, 4)), signal);
  }
}
