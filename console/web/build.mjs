// Builds dist/ (index.html, app.js, app.css, src.sha256) from src/ with
// esbuild. The output depends only on the files hashed into dist/src.sha256
// and on the pinned versions in package-lock.json, so a rebuild of an
// unchanged tree is byte-identical (embed_test.go checks the hash).
//   node build.mjs [--outdir DIR]
import * as esbuild from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = dirname(fileURLToPath(import.meta.url));
const i = process.argv.indexOf('--outdir');
const out = i > 0 ? process.argv[i + 1] : join(root, 'dist');

// sourceHash must match sourceHash in embed_test.go.
export function sourceHash() {
  const files = readdirSync(join(root, 'src')).sort().map((f) => 'src/' + f);
  files.push('build.mjs', 'package-lock.json');
  const h = createHash('sha256');
  for (const f of files) h.update(f + '\0' + readFileSync(join(root, f), 'utf8') + '\0');
  return h.digest('hex');
}

const r = await esbuild.build({
  entryPoints: { app: join(root, 'src/main.js') },
  bundle: true,
  minify: true,
  format: 'iife',
  target: 'es2020',
  absWorkingDir: root,
  outdir: out,
  write: false,
  legalComments: 'none',
  charset: 'utf8',
  logLevel: 'warning',
});

mkdirSync(out, { recursive: true });
for (const f of r.outputFiles) {
  writeFileSync(f.path, f.contents);
  const name = f.path.slice(out.length + 1);
  console.log(`${name.padEnd(10)} ${String(f.contents.length).padStart(7)} bytes, ${String(gzipSync(f.contents).length).padStart(6)} gzipped`);
}
writeFileSync(join(out, 'index.html'), readFileSync(join(root, 'src/index.html')));
writeFileSync(join(out, 'src.sha256'), sourceHash() + '\n');
