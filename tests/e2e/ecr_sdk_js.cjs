// The AWS SDK for JavaScript v3 (@aws-sdk/client-ecr) as test_ecr_clients.py
// drives it: one ECR operation per run, against KURA_URL with the key in
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
//
//   node ecr_sdk_js.cjs <Operation> '<input JSON>'              one call
//   node ecr_sdk_js.cjs --paginate <Operation> '<input>' <size>  every page, via the SDK's paginator
//
// Prints the output as JSON (without $metadata); a Date the SDK parsed is
// printed as {"$date": "<ISO 8601>"}, so the caller can tell it was parsed.
// An error prints {"error": name, "message": ...} and exits 3.
// The package comes from NODE_PATH (.ci/install-deps.sh installs it under /opt).
"use strict";
const ecr = require("@aws-sdk/client-ecr");

function plain(v) {
  if (v instanceof Date) return { $date: v.toISOString() };
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString("base64") };
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object") {
    const out = {};
    for (const [k, x] of Object.entries(v)) if (k !== "$metadata" && x !== undefined) out[k] = plain(x);
    return out;
  }
  return v;
}

async function main() {
  const args = process.argv.slice(2);
  const paginate = args[0] === "--paginate";
  if (paginate) args.shift();
  const [op, inputText, pageSize] = args;
  const client = new ecr.ECRClient({
    endpoint: process.env.KURA_URL,
    region: process.env.AWS_DEFAULT_REGION,
    credentials: {
      accessKeyId: process.env.AWS_ACCESS_KEY_ID,
      secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
    },
    maxAttempts: 1,
  });
  const input = JSON.parse(inputText || "{}");
  if (paginate) {
    const pages = [];
    for await (const page of ecr["paginate" + op]({ client, pageSize: Number(pageSize) }, input)) {
      pages.push(plain(page));
    }
    return { pages };
  }
  const Command = ecr[op + "Command"];
  if (!Command) throw Object.assign(new Error("no such command " + op), { name: "NoSuchCommand" });
  return plain(await client.send(new Command(input)));
}

main().then(
  (out) => console.log(JSON.stringify(out)),
  (e) => {
    console.log(JSON.stringify({ error: e.name, message: e.message }));
    process.exit(3);
  },
);
