// Builds dist/ from src/ with esbuild. The output depends only on the files
// hashed into dist/src.sha256 and on esbuild's pinned version, so a rebuild
// of an unchanged tree is byte-identical (the Go test relies on that).
//   node scripts/build.mjs [--outdir DIR]
import * as esbuild from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const i = process.argv.indexOf('--outdir');
const out = i > 0 ? process.argv[i + 1] : join(root, 'dist');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

// sourceHash must match sourceHash in embed_test.go.
export function sourceHash() {
  const files = readdirSync(join(root, 'src')).sort().map((f) => 'src/' + f);
  files.push('scripts/build.mjs', 'package.json');
  const h = createHash('sha256');
  for (const f of files) h.update(f + '\0' + readFileSync(join(root, f), 'utf8') + '\0');
  return h.digest('hex');
}

const common = {
  bundle: true,
  absWorkingDir: root,
  write: false,
  target: 'es2017',
  legalComments: 'none',
  charset: 'utf8',
  define: { __VERSION__: JSON.stringify(pkg.version) },
  logLevel: 'warning',
};

async function bundle(entry, format, minify) {
  const r = await esbuild.build({ ...common, entryPoints: [join(root, 'src', entry)], format, minify });
  return r.outputFiles[0].text;
}

const snippet = await esbuild.transform(readFileSync(join(root, 'src/snippet.js'), 'utf8'), {
  minify: true,
  target: 'es2017',
  legalComments: 'none',
});

mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'sdk.js'), await bundle('browser.js', 'iife', true));
writeFileSync(join(out, 'herd.esm.js'), await bundle('index.js', 'esm', false));
writeFileSync(join(out, 'snippet.js'), snippet.code);
writeFileSync(join(out, 'src.sha256'), sourceHash() + '\n');
