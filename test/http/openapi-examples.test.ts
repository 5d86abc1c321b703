import { describe, expect, it } from 'vitest';
import { examplesAsOpenApi30 } from '../../src/http/app';

describe('examplesAsOpenApi30', () => {
  it('turns every schema `examples` array into `example`, inside unions and under properties of any name', () => {
    const doc = examplesAsOpenApi30({
      components: {
        schemas: {
          Body: {
            anyOf: [{ type: 'object', properties: { a: { type: 'string', examples: ['x', 'y'] } } }, { type: 'string', enum: [''] }],
            properties: {
              default: { type: 'object', properties: { b: { type: 'integer', examples: [7] } } },
              examples: { type: 'array', items: { type: 'string' }, examples: [['z']] },
            },
          },
        },
      },
    });
    const body = doc.components.schemas.Body as any;
    expect(body.anyOf[0].properties.a).toEqual({ type: 'string', example: 'x' });
    expect(body.properties.default.properties.b).toEqual({ type: 'integer', example: 7 });
    // A property named `examples` keeps its schema; only its own examples array is converted.
    expect(body.properties.examples).toEqual({ type: 'array', items: { type: 'string' }, example: ['z'] });
  });

  it('walks every map of names, whatever the names: a response called default, a schema called value', () => {
    const doc = examplesAsOpenApi30({
      paths: { '/x': { get: { responses: { default: { content: { 'application/json': { schema: { type: 'string', examples: ['r'] } } } } } } } },
      components: { schemas: { value: { type: 'string', examples: ['s'] } } },
    });
    expect(doc.paths['/x'].get.responses.default.content['application/json'].schema).toEqual({ type: 'string', example: 'r' });
    expect(doc.components.schemas.value).toEqual({ type: 'string', example: 's' });
  });

  it('leaves data alone: constants, defaults, extensions, example values and a media type’s examples map', () => {
    const data = { examples: ['kept'], n: 1 };
    const doc = examplesAsOpenApi30({
      paths: {
        '/x': {
          post: {
            requestBody: { content: { 'application/json': { schema: { const: data, default: data, 'x-meta': data }, examples: { e1: { value: data } } } } },
          },
        },
      },
    });
    const media = doc.paths['/x'].post.requestBody.content['application/json'] as any;
    for (const value of [media.schema.const, media.schema.default, media.schema['x-meta'], media.examples.e1.value]) {
      expect(value).toEqual({ examples: ['kept'], n: 1 });
    }
  });
});
