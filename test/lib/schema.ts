// The schema validator lives in api/schema.ts and api/schema-compile.ts (ajv at run time; the
// agent's standalone mode uses the precompiled one); tests import both from here.
export * from '../../api/schema.ts';
export * from '../../api/schema-compile.ts';
