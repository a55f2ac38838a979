// subscribe.mjs REDIS_URL CHANNEL N: subscribes to CHANNEL, prints "ready",
// then parses each of the first N messages with the official SDK, as an
// HTTP structured-mode message (HTTP.toEvent) and with the strict
// CloudEvent constructor, validates it, and prints one JSON line:
// {"raw": the message, "event": the SDK's attributes and data}. A
// validation error ends it with status 1.
import { CloudEvent, HTTP } from "cloudevents";
import { createClient } from "redis";

const [url, channel, count] = process.argv.slice(2);
const client = createClient({ url });
client.on("error", (err) => { console.error(err); process.exit(1); });
await client.connect();
const sub = client.duplicate();
await sub.connect();

let left = Number(count);
await sub.subscribe(channel, async (raw) => {
  try {
    const event = HTTP.toEvent({ headers: { "content-type": "application/cloudevents+json" }, body: raw });
    event.validate(); // toEvent does not validate by itself
    new CloudEvent(JSON.parse(raw)); // strict: throws on any violation
    const attrs = { ...event };
    attrs.time = new Date(event.time).toISOString();
    if (event.data_base64) delete attrs.data; // the SDK keeps the bytes as a typed array
    console.log(JSON.stringify({ raw, event: attrs }));
  } catch (err) {
    console.error("invalid CloudEvent:", err.message, JSON.stringify(err.errors ?? ""), raw);
    process.exit(1);
  }
  if (--left === 0) {
    await sub.quit();
    await client.quit();
  }
});
console.log("ready");
