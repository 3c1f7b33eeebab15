// Runs ALTCHA's own library (altcha-lib, protocol v1) for mailslot's
// interoperability tests. Reads one JSON document or payload on stdin,
// writes one line on stdout. The HMAC key comes from ALTCHA_HMAC_KEY.
//
//   node altcha.mjs solve    challenge JSON in, base64 payload out
//   node altcha.mjs verify   base64 payload in, {"verified":bool} out
//   node altcha.mjs create   {"property","expires","maxnumber"} in, challenge JSON out
import { createChallenge, solveChallenge, verifySolution } from 'altcha-lib/v1';

async function stdin() {
  let s = '';
  for await (const chunk of process.stdin) s += chunk;
  return s.trim();
}

function key() {
  const k = process.env.ALTCHA_HMAC_KEY;
  if (!k) throw new Error('ALTCHA_HMAC_KEY is not set');
  return k;
}

const mode = process.argv[2];
const input = await stdin();
if (mode === 'solve') {
  const c = JSON.parse(input);
  const solution = await solveChallenge(c.challenge, c.salt, c.algorithm, c.maxnumber).promise;
  if (!solution) throw new Error('no solution up to maxnumber');
  const payload = { algorithm: c.algorithm, challenge: c.challenge, number: solution.number, salt: c.salt, signature: c.signature };
  process.stdout.write(btoa(JSON.stringify(payload)) + '\n');
} else if (mode === 'verify') {
  const verified = await verifySolution(input, key(), true);
  process.stdout.write(JSON.stringify({ verified }) + '\n');
} else if (mode === 'create') {
  const o = JSON.parse(input);
  const c = await createChallenge({
    hmacKey: key(),
    maxnumber: o.maxnumber,
    params: { property: o.property },
    expires: new Date(o.expires * 1000),
  });
  process.stdout.write(JSON.stringify(c) + '\n');
} else {
  throw new Error(`unknown mode ${mode}; want solve, verify or create`);
}
