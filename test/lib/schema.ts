// The schema validator lives in api/schema.ts (the agent's standalone mode validates manifests
// with it at run time); tests import it from here as before.
export * from '../../api/schema.ts';
