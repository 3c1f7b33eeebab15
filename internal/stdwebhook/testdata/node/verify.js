// Verifies a delivery signed by internal/stdwebhook with the official
// Standard Webhooks library. Reads {"secret","id","timestamp","signature","body"}
// as JSON on stdin; prints "ok" and exits 0, or prints the library's error
// and exits 1.
"use strict";
const { Webhook } = require("standardwebhooks");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const req = JSON.parse(input);
  try {
    new Webhook(req.secret).verify(req.body, {
      "webhook-id": req.id,
      "webhook-timestamp": req.timestamp,
      "webhook-signature": req.signature,
    }, { jsonParse: false });
    process.stdout.write("ok\n");
  } catch (err) {
    process.stdout.write(`${err.name}: ${err.message}\n`);
    process.exit(1);
  }
});
