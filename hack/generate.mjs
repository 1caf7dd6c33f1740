#!/usr/bin/env node
// Writes the generated files from their one source (`npm run generate`, which builds first).
// Node 20 cannot run TypeScript, so this reads the compiled modules under dist/.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const { CRD_FILE, renderCrdYaml } = await import(new URL('../dist/crds/crd.js', import.meta.url).href);

writeFileSync(`${root}${CRD_FILE}`, renderCrdYaml());
console.warn(`wrote ${CRD_FILE}`);
