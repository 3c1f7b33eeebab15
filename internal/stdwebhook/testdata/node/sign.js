// Signs a message with the official Standard Webhooks library, for
// internal/stdwebhook to verify. Reads {"secret","id","timestamp","body"}
// (timestamp in Unix seconds) as JSON on stdin and prints the
// webhook-signature value.
"use strict";
const { Webhook } = require("standardwebhooks");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const req = JSON.parse(input);
  const sig = new Webhook(req.secret).sign(req.id, new Date(req.timestamp * 1000), req.body);
  process.stdout.write(`${sig}\n`);
});
