// Prints dist/sdk.js's size and fails when it is over the 6 KB gzip budget.
import { readFileSync } from 'node:fs';
import { gzipSync, brotliCompressSync } from 'node:zlib';

const LIMIT = 6 * 1024;
const js = readFileSync(new URL('../dist/sdk.js', import.meta.url));
const gz = gzipSync(js, { level: 9 }).length;
console.log(`sdk.js: ${js.length} bytes, ${gz} gzipped (budget ${LIMIT}), ${brotliCompressSync(js).length} brotli`);
if (gz > LIMIT) {
  console.error(`sdk.js is over budget by ${gz - LIMIT} bytes gzipped`);
  process.exit(1);
}
