// Types of virtualserver.js, which scripts/generate-validator.ts writes from crds/virtualserver.yaml.
import type { ValidateFunction } from 'ajv';
import type { Crd } from '../schema.ts';

/** SHA-256 (hex) of the bytes of the crds/virtualserver.yaml this module was generated from. */
export declare const crdSha256: string;
/** That file's loadCrd() result. */
export declare const crd: Crd;
/** ajv's validator for toJsonSchema(crd.schema), as api/schema-compile.ts's newAjv() compiles it. */
export declare const validate: ValidateFunction;
export default validate;
