#!/usr/bin/env node
// The official OpenAI Node.js SDK (the `openai` package pinned in bench/package.json,
// installed by `scripts/deps bench` with `npm ci`) sending one chat request per line of SRC
// with CONCURRENCY requests in flight (a pool of async loops); writes fanmap's JSONL records
// in order.
//
//   node bench/peers/http_openai.js SRC DST BASE_URL MODEL CONCURRENCY
//
// BASE_URL is the API's base, e.g. http://127.0.0.1:8080/v1.
"use strict";
const fs = require("fs");
const path = require("path");

const args = process.argv.slice(2);
if (args.length !== 5) {
  process.stderr.write("usage: http_openai.js SRC DST BASE_URL MODEL CONCURRENCY\n");
  process.exit(2);
}
const [src, dst, baseURL, model, concurrencyArg] = args;
let OpenAI;
try {
  ({ OpenAI } = require(path.join(__dirname, "..", "node_modules", "openai")));
} catch (e) {
  process.stderr.write(`http_openai.js: the openai package is not installed ` +
                       `(run scripts/deps bench): ${e.message}\n`);
  process.exit(3);
}

async function main() {
  const client = new OpenAI({ apiKey: "unused", baseURL, maxRetries: 0, timeout: 120000 });
  const prompts = fs.readFileSync(src, "utf8").split("\n");
  if (prompts.length && prompts[prompts.length - 1] === "") prompts.pop();
  const results = new Array(prompts.length);
  let next = 0;
  async function loop() {
    while (next < prompts.length) {
      const i = next++;
      const r = await client.chat.completions.create({
        model, messages: [{ role: "user", content: prompts[i] }],
      });
      results[i] = r.choices[0].message.content;
    }
  }
  const concurrency = Math.max(1, parseInt(concurrencyArg, 10));
  await Promise.all(Array.from({ length: concurrency }, loop));
  fs.writeFileSync(dst, results.map(
    (r, i) => `{"index":${i},"ok":true,"result":${JSON.stringify(r)}}\n`).join(""));
}

main().catch((e) => {
  process.stderr.write(`http_openai.js: ${e.stack || e}\n`);
  process.exit(1);
});
