// publish.mjs REDIS_URL: builds CloudEvents with the official SDK,
// serializes them in structured mode (HTTP.structured, the body being
// application/cloudevents+json) and publishes them: one on the pub/sub
// channel app:node.in, one as the data field of an entry of the stream
// app:stream:node.s (without a topic field). It prints each message sent.
import { CloudEvent, HTTP } from "cloudevents";
import { createClient } from "redis";

const client = createClient({ url: process.argv[2] });
client.on("error", (err) => { console.error(err); process.exit(1); });
await client.connect();

const event = (id, subject) => new CloudEvent({
  id,
  source: "urn:node:publisher",
  type: "com.example.order.created",
  subject,
  datacontenttype: "application/json",
  data: { order: 7, items: ["tea", "thé"] },
  traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
  nodeext: 42,
});

const pubsub = HTTP.structured(event("node-1", "order-7")).body;
await client.publish("app:node.in", pubsub);
console.log(pubsub);
const stream = HTTP.structured(event("node-2", "order-8")).body;
await client.xAdd("app:stream:node.s", "*", { data: stream });
console.log(stream);
await client.quit();
