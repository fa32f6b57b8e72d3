import assert from 'node:assert/strict';
import fc from 'fast-check';
import t from 'tap';
import { StrictJsonError, parseStrictJson, type JsonValue } from '../../certs/strict-json.js';

/** The reason parseStrictJson gave, or 'ok'. */
function reason(text: string, maxDepth?: number): string {
  try {
    parseStrictJson(text, { maxDepth });
    return 'ok';
  } catch (err) {
    if (err instanceof StrictJsonError) return err.reason;
    throw err;
  }
}

t.test('valid JSON parses to what JSON.parse gives', async (t) => {
  // Properties use node:assert so that fast-check sees a failure and shrinks it.
  // fc.json() makes valid JSON text, with unique keys per object; indenting varies the whitespace.
  fc.assert(
    fc.property(fc.jsonValue(), fc.constantFrom(undefined, 1, 2, '\t', ' \r\n '), (value, indent) => {
      const text = JSON.stringify(value, null, indent);
      assert.deepStrictEqual(parseStrictJson(text), JSON.parse(text));
    }),
    { numRuns: 500 },
  );
  t.pass('500 random JSON values');
});

t.test('strings with every kind of escape, including lone surrogates, match JSON.parse', async (t) => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
      const text = JSON.stringify(s); // escapes quotes, backslashes, controls and lone surrogates
      assert.equal(parseStrictJson(text), JSON.parse(text));
    }),
    { numRuns: 500 },
  );
  for (const text of ['"\\ud800"', '"\\udc00x"', '"\\u00e9\\/\\b\\f\\n\\r\\t\\"\\\\"', '"\\uD83D\\uDE00"']) {
    t.equal(parseStrictJson(text), JSON.parse(text), text);
  }
});

t.test('any text it accepts, JSON.parse accepts with the same value', async (t) => {
  const alphabet = fc.constantFrom(...'{}[]",:0123456789-+.eE tfnrulsa\\/\n'.split(''));
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.string({ unit: alphabet, maxLength: 30 })), (text) => {
      let ours: JsonValue;
      try {
        ours = parseStrictJson(text);
      } catch (err) {
        assert.ok(err instanceof StrictJsonError, 'only StrictJsonError is thrown');
        return;
      }
      assert.deepStrictEqual(ours, JSON.parse(text));
    }),
    { numRuns: 2000 },
  );
  t.pass('2000 random texts');
});

t.test('a repeated key is rejected at any depth', async (t) => {
  t.equal(reason('{"a":1,"a":2}'), 'duplicate-key');
  t.equal(reason('{"a":1,"b":{"c":1,"c":1}}'), 'duplicate-key');
  t.equal(reason('[{"x":[{"y":0,"y":0}]}]'), 'duplicate-key');
  t.equal(reason('{"a":1,"\\u0061":2}'), 'duplicate-key', 'keys are compared after unescaping');
  t.equal(reason('{"__proto__":1,"__proto__":2}'), 'duplicate-key');
  t.equal(reason('{"toString":1,"hasOwnProperty":2,"constructor":3}'), 'ok', 'prototype names are ordinary keys');
  t.equal(reason('[{"a":1},{"a":1}]'), 'ok', 'equal keys in sibling objects are fine');
});

t.test('__proto__ becomes an own property, as with JSON.parse', async (t) => {
  const value = parseStrictJson('{"__proto__":{"polluted":true}}') as Record<string, unknown>;
  t.equal(Object.getPrototypeOf(value), Object.prototype);
  t.same(Object.keys(value), ['__proto__']);
  t.equal(({} as Record<string, unknown>).polluted, undefined);
});

t.test('the depth cap counts the top level as 1', async (t) => {
  t.equal(reason('[[[]]]', 3), 'ok');
  t.equal(reason('[[[[]]]]', 3), 'too-deep');
  t.equal(reason('{"a":{"b":{}}}', 3), 'ok');
  t.equal(reason('{"a":{"b":{"c":{}}}}', 3), 'too-deep');
  t.equal(reason('['.repeat(100_000)), 'too-deep', 'deep input fails on the cap, not the stack');
});

t.test('malformed JSON is a syntax error', async (t) => {
  const bad = [
    '', ' ', '{', '}', '[1,]', '[,1]', '{"a":1,}', '{,}', '{"a" 1}', '{a:1}', "{'a':1}", '01', '1.', '.5', '+1', '-', '1e', '0x10',
    'NaN', 'Infinity', 'tru', 'nul', 'True', '"abc', '"\\x"', '"\\u12g4"', '"\\u12"', '"a\nb"', '"\t"', '{"a":1}x', '1 2',
    '\ufeff{}', '\u00a0{}', '[1 2]', '{"a":1 "b":2}', '"\\', '[', '[1', '{"a"', '{"a":',
  ];
  for (const text of bad) {
    t.equal(reason(text), 'syntax', JSON.stringify(text));
    t.throws(() => JSON.parse(text), `JSON.parse also rejects ${JSON.stringify(text)}`);
  }
});

t.test('errors carry the offset where parsing stopped', async (t) => {
  const err = t.throws(() => parseStrictJson('{"a":1,"a":2}')) as StrictJsonError;
  t.equal(err.offset, 7);
  t.match(err.message, /repeated object key at offset 7/);
});
