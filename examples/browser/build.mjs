// Bundles src/ into dist/: index.html, style.css and app.js (one ES module, no
// external resources). `npm run build`.
import { copyFile, mkdir, rm } from 'node:fs/promises'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'

const here = dirname(fileURLToPath(import.meta.url))
const dist = join(here, 'dist')

// libp2p-live-rendezvous is linked from ../../js, which has node_modules of its own:
// resolve its bare imports from here, so the bundle holds one copy of each package.
const oneCopy = {
  name: 'one-copy',
  setup (build) {
    build.onResolve({ filter: /^[^./]/ }, async (args) => {
      const outside = args.importer !== '' && relative(here, args.importer).startsWith('..')
      if (!outside || args.pluginData === 'one-copy') return undefined
      const found = await build.resolve(args.path, { kind: args.kind, resolveDir: here, pluginData: 'one-copy' })
      return found.errors.length === 0 ? found : undefined
    })
  }
}

await rm(dist, { recursive: true, force: true })
await mkdir(dist)
await esbuild.build({
  // bench.js: the page of bench/browser_membership.py
  entryPoints: [{ in: join(here, 'src', 'main.js'), out: 'app' }, { in: join(here, 'src', 'bench.js'), out: 'bench' }],
  outdir: dist,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  plugins: [oneCopy],
  logLevel: 'warning'
})
for (const file of ['index.html', 'style.css', 'bench.html']) await copyFile(join(here, 'src', file), join(dist, file))
console.log(`built ${relative(process.cwd(), resolve(dist))}/index.html`)
