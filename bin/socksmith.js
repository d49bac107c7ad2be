#!/usr/bin/env node
// The `socksmith` command. An installed package runs the compiled CLI in dist/ (built by
// `prepack` before packing). A git checkout that was never built (`npm install && npx socksmith`
// on a fresh clone: no install script builds it) runs the TypeScript sources through jiti, the
// loader socksmith already uses for .ts configs; `npm run build` makes it use dist/ instead.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const compiled = new URL('../dist/src/cli/main.js', import.meta.url);
if (fs.existsSync(compiled)) {
  await import(compiled.href);
} else {
  const { createJiti } = await import('jiti');
  // The package's own specifiers ('socksmith' in the built-ins, 'socksmith/plugins/<name>' in the
  // loader) resolve through package.json "exports" to dist/, which does not exist here: point them
  // at the sources, so every module goes through jiti and there is one copy of each.
  const root = fileURLToPath(new URL('..', import.meta.url));
  const alias = {
    'socksmith/builtin-types': `${root}plugins/builtin-types/index.ts`,
    'socksmith/plugins': `${root}plugins`,
    socksmith: `${root}src/index.ts`,
  };
  const jiti = createJiti(import.meta.url, { fsCache: false, interopDefault: true, alias });
  await jiti.import(fileURLToPath(new URL('../src/cli/main.ts', import.meta.url)));
}
