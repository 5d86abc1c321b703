import { AjvCompiler, type ValidatorFactory } from '@fastify/ajv-compiler';

/** The Ajv options every schema-validated route uses (app.ts). */
export const AJV_OPTIONS = { removeAdditional: false, coerceTypes: 'array', allErrors: false } as const;

/**
 * Fastify's own validator compiler, twice: query strings, path parameters and headers are text, so "5" must be
 * read as 5 there (Ajv's type coercion); a JSON body says what type each value is, so it is validated without
 * coercion. Coercing bodies turned an operator's mistakes into money and limits: `{"spend_cap": ""}` removed a
 * key's spend cap ("" coerces to null), `{"amount": true}` topped up 1 credit, `{"rpm": true}` set a limit of 1,
 * `{"models": "GEM"}` became a list. (The submit and upload routes validate their bodies themselves.)
 */
export function buildValidator(): ValidatorFactory {
  const fromPool = AjvCompiler();
  return (externalSchemas, options) => {
    const text = fromPool(externalSchemas, options);
    // (Never JTD mode here: app.ts passes plain Ajv options.)
    const json = fromPool(externalSchemas, { ...options, customOptions: { ...options?.customOptions, coerceTypes: false } } as typeof options);
    return (route) => (route.httpPart === 'body' ? json(route) : text(route));
  };
}
