/**
 * A strict JSON parser for token headers and claims.
 *
 * `JSON.parse` keeps the last of two equal keys (`{"alg":"EdDSA","alg":"none"}` reads as
 * `none`), and different JWT libraries pick different duplicates, so a token that one reader
 * sees as harmless can mean something else to another. This parser follows RFC 8259 exactly and
 * rejects a repeated key at any depth, nesting deeper than a cap, and anything after the value.
 * It returns the same values as `JSON.parse` for every input it accepts (lone surrogates in
 * `\u` escapes are accepted, as `JSON.parse` does).
 */

/** A parsed JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Why a text was rejected: bad syntax, a repeated object key, or nesting past the cap. */
export type StrictJsonReason = 'syntax' | 'duplicate-key' | 'too-deep';

/** A text that is not strict JSON. `offset` is the UTF-16 index where parsing stopped. */
export class StrictJsonError extends Error {
  readonly reason: StrictJsonReason;
  readonly offset: number;
  constructor(reason: StrictJsonReason, offset: number, message: string) {
    super(`${message} at offset ${offset}`);
    this.name = 'StrictJsonError';
    this.reason = reason;
    this.offset = offset;
  }
}

/** Options for parseStrictJson. */
export interface StrictJsonOptions {
  /** Deepest nesting of arrays and objects accepted; the top level counts as 1. Default 64. */
  maxDepth?: number;
}

/** Default nesting cap: far beyond any token, far below a stack overflow. */
export const DEFAULT_MAX_JSON_DEPTH = 64;

const NUMBER_PATTERN = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const HEX_PATTERN = /^[0-9a-fA-F]{4}$/;
const SIMPLE_ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/**
 * Parses `text` as one JSON value, rejecting repeated keys, nesting deeper than `maxDepth` and
 * trailing non-whitespace. Throws StrictJsonError with the reason; never another error.
 */
export function parseStrictJson(text: string, options: StrictJsonOptions = {}): JsonValue {
  const parser = new Parser(text, options.maxDepth ?? DEFAULT_MAX_JSON_DEPTH);
  parser.skipWhitespace();
  const value = parser.parseValue(1);
  parser.skipWhitespace();
  if (parser.pos !== text.length) parser.fail('syntax', 'unexpected text after the value');
  return value;
}

class Parser {
  pos = 0;
  constructor(
    private readonly text: string,
    private readonly maxDepth: number,
  ) {}

  fail(reason: StrictJsonReason, message: string): never {
    throw new StrictJsonError(reason, this.pos, message);
  }

  skipWhitespace(): void {
    const { text } = this;
    let c = text.charCodeAt(this.pos);
    // space, tab, line feed, carriage return: the only whitespace JSON allows.
    while (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) c = text.charCodeAt(++this.pos);
  }

  parseValue(depth: number): JsonValue {
    const c = this.text[this.pos];
    switch (c) {
      case '{':
        return this.parseObject(depth);
      case '[':
        return this.parseArray(depth);
      case '"':
        return this.parseString();
      case 't':
        return this.parseLiteral('true', true);
      case 'f':
        return this.parseLiteral('false', false);
      case 'n':
        return this.parseLiteral('null', null);
      default:
        if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.parseNumber();
        return this.fail('syntax', c === undefined ? 'unexpected end of input' : 'unexpected character');
    }
  }

  private parseLiteral<T extends JsonValue>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) this.fail('syntax', 'unexpected character');
    this.pos += word.length;
    return value;
  }

  private parseNumber(): number {
    NUMBER_PATTERN.lastIndex = this.pos;
    const m = NUMBER_PATTERN.exec(this.text);
    if (!m) return this.fail('syntax', 'malformed number');
    this.pos += m[0].length;
    return Number(m[0]);
  }

  private parseString(): string {
    const { text } = this;
    let pos = this.pos + 1; // past the opening quote
    let out = '';
    let runStart = pos;
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === 0x22) {
        out += text.slice(runStart, pos);
        this.pos = pos + 1;
        return out;
      }
      if (c === 0x5c) {
        out += text.slice(runStart, pos);
        const e = text[pos + 1];
        if (e === 'u') {
          const hex = text.slice(pos + 2, pos + 6);
          if (!HEX_PATTERN.test(hex)) {
            this.pos = pos;
            this.fail('syntax', 'malformed \\u escape');
          }
          out += String.fromCharCode(parseInt(hex, 16));
          pos += 6;
        } else {
          const simple = e === undefined ? undefined : SIMPLE_ESCAPES[e];
          if (simple === undefined) {
            this.pos = pos;
            this.fail('syntax', 'malformed escape');
          }
          out += simple;
          pos += 2;
        }
        runStart = pos;
        continue;
      }
      if (Number.isNaN(c) || c < 0x20) {
        this.pos = pos;
        this.fail('syntax', Number.isNaN(c) ? 'unterminated string' : 'control character in string');
      }
      pos++;
    }
  }

  private parseArray(depth: number): JsonValue[] {
    if (depth > this.maxDepth) this.fail('too-deep', `nesting deeper than ${this.maxDepth}`);
    this.pos++; // [
    const out: JsonValue[] = [];
    this.skipWhitespace();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWhitespace();
      out.push(this.parseValue(depth + 1));
      this.skipWhitespace();
      const c = this.text[this.pos++];
      if (c === ']') return out;
      if (c !== ',') {
        this.pos--;
        this.fail('syntax', "expected ',' or ']'");
      }
    }
  }

  private parseObject(depth: number): { [key: string]: JsonValue } {
    if (depth > this.maxDepth) this.fail('too-deep', `nesting deeper than ${this.maxDepth}`);
    this.pos++; // {
    const out: { [key: string]: JsonValue } = {};
    this.skipWhitespace();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.text[this.pos] !== '"') this.fail('syntax', 'expected a string key');
      const keyAt = this.pos;
      const key = this.parseString();
      if (Object.prototype.hasOwnProperty.call(out, key)) {
        this.pos = keyAt;
        this.fail('duplicate-key', 'repeated object key');
      }
      this.skipWhitespace();
      if (this.text[this.pos] !== ':') this.fail('syntax', "expected ':'");
      this.pos++;
      this.skipWhitespace();
      const value = this.parseValue(depth + 1);
      // `out[key] = value` would set the prototype for "__proto__"; JSON.parse makes an own property.
      if (key === '__proto__') Object.defineProperty(out, key, { value, writable: true, enumerable: true, configurable: true });
      else out[key] = value;
      this.skipWhitespace();
      const c = this.text[this.pos++];
      if (c === '}') return out;
      if (c !== ',') {
        this.pos--;
        this.fail('syntax', "expected ',' or '}'");
      }
    }
  }
}
