// Which snippets can neither change nor tell apart what they are given, read from their text.
//
// Hydration gives every document its own deep copy of its contacts and places, as CHT does, so a
// snippet that changes `doc.contact.parent` changes neither the cache nor the next document. The
// copies are a good part of the sandbox's time, and most snippets only read (`doc.type ===
// 'data_record' && !!doc.form`). For a pipeline whose every snippet passes `readOnly`, a batch
// shares one hydrated lineage per contact between its documents instead (see hydration.js).
//
// `readOnly` is a tokenizer, not a parser, and it says no whenever it is unsure; a "no" only
// costs the copies. A snippet passes when it has:
// - no assignment, `++`, `--`, `delete`, and none of `for` (a loop target is assigned), `with`,
//   `class`, `import`, `async`/`await`, `yield`, `super`, `this`, `arguments`, `eval`;
// - no name of a built-in function that is not in READ_ONLY (so no `sort`, `push`, `assign`,
//   `freeze`, `call`, `bind`, `set`...), nor `prototype`, `constructor`, `__proto__`, `Reflect`,
//   `globalThis`: without them no built-in that changes an object can be called or handed on
//   as a callback; the names are read from this isolate's own built-ins when the bridge loads;
// - a built-in function's name (READ_ONLY's too) only where it is called (`x.of(`), or for
//   `Object`, `Array`, `Date`... before a `.`: handed on as a value (`forEach(Array.of, F)`,
//   `some([a].includes, [a])`) it runs with a receiver of the snippet's choice; no `new` but
//   `new Date(`; no `<!--` or `-->` anywhere (V8 reads them as line comments, this tokenizer not);
// - an assignment only to a name declared in a scope around it (`var`, `let`, `const`, a function's
//   name or plain parameter, `catch (e)`): another is a global, kept for the next document;
// - a computed member (`x[...]`) only with a literal inside, checked like a name, and no computed
//   key (`{[k]: v}`); no string that is a denied name (`({'push': p}) => ...`);
// - no regular expression or division (`/`), template (`` ` ``), backslash or non-ASCII character
//   outside strings and comments, where a tokenizer could misread what follows;
// - for `==`, `===`, `!=`, `!==` and the argument of `indexOf`, `lastIndexOf`, `includes`, a
//   literal on one side: with copies two objects of one document are never the same object, so
//   comparing two of them (`doc.contact === doc.patient`) is only allowed where no object can be
//   on both sides.
'use strict';

var __chtPurity = (function () {
  // Built-in functions that change neither their receiver nor their arguments and never return
  // a built-in function (so `Reflect.get` and `Object.getOwnPropertyDescriptor` are not here).
  var READ_ONLY = [
    'Object', 'Array', 'Date', 'String', 'Number', 'Boolean', 'parseInt', 'parseFloat', 'isNaN', 'isFinite',
    'encodeURIComponent', 'decodeURIComponent', 'encodeURI', 'decodeURI',
    'keys', 'values', 'entries', 'isArray', 'from', 'of', 'fromEntries', 'stringify', 'parse', 'now', 'UTC',
    'floor', 'ceil', 'round', 'abs', 'min', 'max', 'trunc', 'sign', 'pow', 'sqrt', 'random', 'isInteger',
    'isSafeInteger', 'fromCharCode', 'fromCodePoint',
    'toISOString', 'toJSON', 'toString', 'toLowerCase', 'toUpperCase', 'toLocaleString', 'toLocaleDateString',
    'toLocaleTimeString', 'toDateString', 'toTimeString', 'toUTCString', 'toFixed', 'toPrecision', 'valueOf',
    'trim', 'trimStart', 'trimEnd', 'padStart', 'padEnd', 'slice', 'substring', 'substr', 'indexOf',
    'lastIndexOf', 'includes', 'startsWith', 'endsWith', 'split', 'join', 'concat', 'charAt', 'charCodeAt',
    'codePointAt', 'at', 'replace', 'replaceAll', 'match', 'search', 'repeat', 'normalize', 'localeCompare',
    'map', 'filter', 'find', 'findIndex', 'findLast', 'findLastIndex', 'some', 'every', 'reduce', 'reduceRight',
    'forEach', 'flat', 'flatMap', 'toSorted', 'toReversed', 'hasOwnProperty',
    'getTime', 'getFullYear', 'getMonth', 'getDate', 'getDay', 'getHours', 'getMinutes', 'getSeconds',
    'getMilliseconds', 'getUTCFullYear', 'getUTCMonth', 'getUTCDate', 'getUTCDay', 'getUTCHours',
    'getUTCMinutes', 'getUTCSeconds', 'getUTCMilliseconds', 'getTimezoneOffset'
  ];
  var ALWAYS = ['prototype', 'constructor', '__proto__', 'Reflect', 'globalThis', 'this', 'arguments', 'eval',
    'caller', 'callee', 'delete', 'for', 'with', 'switch', 'class', 'import', 'export', 'async', 'await', 'yield',
    'super', 'debugger'];
  // Reserved words that are also the names of built-in methods (`return`, `catch`...): as words
  // of the language, not members, they call nothing.
  var KEYWORDS = ['return', 'throw', 'catch', 'finally', 'try', 'if', 'else', 'while', 'do', 'new', 'typeof',
    'void', 'in', 'instanceof', 'var', 'let', 'const', 'function', 'case', 'default', 'break', 'continue'];
  var LITERAL_WORDS = ['true', 'false', 'null', 'undefined', 'NaN', 'Infinity'];
  var EQUALITY = ['==', '===', '!=', '!=='];
  var COMPARES = ['indexOf', 'lastIndexOf', 'includes']; // SameValue(Zero) on their argument
  // After these words a `(` or `[` opens a group or a list, not a call or a member.
  var OPENING_WORDS = ['return', 'typeof', 'void', 'in', 'of', 'instanceof', 'case', 'else', 'do', 'new',
    'if', 'while', 'switch', 'catch', 'function', 'throw'];
  var PUNCTUATORS = ['>>>=', '===', '!==', '**=', '<<=', '>>=', '>>>', '...', '&&=', '||=', '??=',
    '=>', '==', '!=', '<=', '>=', '&&', '||', '??', '?.', '**', '++', '--', '+=', '-=', '*=', '%=', '&=', '|=',
    '^=', '<<', '>>', '{', '}', '(', ')', '[', ']', ';', ',', '<', '>', '+', '-', '*', '%', '&', '|', '^', '!',
    '~', '?', ':', '=', '.'];
  var NUMBER = /^(?:\d[\d_]*(?:\.[\d_]*)?(?:[eE]\d+)?|\.\d[\d_]*(?:[eE]\d+)?|0[xXbBoO][\da-fA-F_]+)n?$/;
  var WRITES = ['=', '+=', '-=', '*=', '%=', '**=', '<<=', '>>=', '>>>=', '&=', '|=', '^=', '&&=', '||=', '??=',
    '++', '--'];

  var denied = (function () {
    var names = new Set(ALWAYS);
    var seen = new Set();
    var queue = [globalThis,
      Object.getPrototypeOf([][Symbol.iterator]()), Object.getPrototypeOf(new Map().entries()),
      Object.getPrototypeOf(new Set().values()), Object.getPrototypeOf(''[Symbol.iterator]()),
      Object.getPrototypeOf(function* () {}), Object.getPrototypeOf(async function () {})];
    while (queue.length) {
      var object = queue.pop();
      if (object === null || (typeof object !== 'object' && typeof object !== 'function') || seen.has(object)) {
        continue;
      }
      seen.add(object);
      queue.push(Object.getPrototypeOf(object));
      Reflect.ownKeys(object).forEach(function (key) {
        var desc = Object.getOwnPropertyDescriptor(object, key);
        if (typeof key === 'string' && (desc.set || typeof desc.value === 'function')) {
          names.add(key);
        }
        queue.push(desc.value, desc.get, desc.set);
      });
    }
    return names;
  })();
  // Every built-in function's name (`of`, `includes`...): these may only be called where they are
  // named (`x.of(`), never handed on as a value, where another receiver or `new` would reach them.
  var builtins = new Set(denied);
  READ_ONLY.forEach(function (name) { denied.delete(name); });
  var NAMESPACES = ['Object', 'Array', 'Date', 'String', 'Number', 'Math', 'JSON'];

  function isIdentStart(c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_' || c === '$';
  }

  function isDigit(c) {
    return c >= '0' && c <= '9';
  }

  // The snippet as tokens: {t: 'name'|'string'|'number'|'punct', v}; or null where unsure.
  function tokens(code) {
    var out = [];
    var i = 0;
    while (i < code.length) {
      var c = code[i];
      var start = i;
      if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\v' || c === '\f') {
        i++;
      } else if (c === '/' && code[i + 1] === '/') {
        while (i < code.length && code[i] !== '\n' && code[i] !== '\r' && code[i] !== '\u2028' && code[i] !== '\u2029') {
          i++;
        }
      } else if (c === '/' && code[i + 1] === '*') {
        var end = code.indexOf('*/', i + 2);
        if (end < 0) {
          return null;
        }
        i = end + 2;
      } else if (c === '"' || c === "'") {
        var text = '';
        for (i++; i < code.length && code[i] !== c; i++) {
          if (code[i] === '\\' || code[i] === '\n' || code[i] === '\r') {
            return null; // an escape could spell any name; a string cannot hold a line break
          }
          text += code[i];
        }
        if (i >= code.length) {
          return null;
        }
        i++;
        out.push({ t: 'string', v: text });
      } else if (isIdentStart(c)) {
        while (i < code.length && (isIdentStart(code[i]) || isDigit(code[i]))) {
          i++;
        }
        out.push({ t: 'name', v: code.slice(start, i) });
      } else if (isDigit(c) || (c === '.' && isDigit(code[i + 1] || ''))) {
        while (i < code.length && (isIdentStart(code[i]) || isDigit(code[i]) || code[i] === '.')) {
          i++;
        }
        if (!NUMBER.test(code.slice(start, i))) {
          return null; // `1..constructor` is a number and a member; `1e+5` is left out too
        }
        out.push({ t: 'number', v: code.slice(start, i) });
      } else {
        var p = null;
        for (var k = 0; k < PUNCTUATORS.length && p === null; k++) {
          if (code.startsWith(PUNCTUATORS[k], i)) {
            p = PUNCTUATORS[k];
          }
        }
        if (p === null) {
          return null; // `/`, a backtick, a backslash, `#`, `@`, a non-ASCII character
        }
        i += p.length;
        out.push({ t: 'punct', v: p });
      }
    }
    return out;
  }

  function literal(token) {
    return !!token && (token.t === 'string' || token.t === 'number' ||
      (token.t === 'name' && LITERAL_WORDS.indexOf(token.v) >= 0));
  }

  // Whether a `(` or `[` after `token` calls or indexes what comes before it.
  function follows(token) {
    if (!token) {
      return false;
    }
    if (token.t === 'name') {
      return OPENING_WORDS.indexOf(token.v) < 0;
    }
    return token.t !== 'punct' || token.v === ')' || token.v === ']' || token.v === '?.';
  }

  // A literal starts at `i`: `-1` counts, as the sign cannot make it an object.
  function literalAt(list, i) {
    var token = list[i];
    if (token && token.t === 'punct' && (token.v === '-' || token.v === '+')) {
      token = list[i + 1];
      return !!token && token.t === 'number';
    }
    return literal(token);
  }

  // A member name (after `.` or `?.`), not a variable.
  function member(list, i) {
    return !!list[i - 1] && (list[i - 1].v === '.' || list[i - 1].v === '?.') && list[i - 1].t === 'punct';
  }

  // Whether the write at `i` (`=`, `+=`..., `++`, `--`) can only change a variable, never an
  // object's property: a variable holds no document, only a reference to one.
  function variableWrite(list, i) {
    var before = list[i - 1];
    var after = list[i + 1];
    var plainBefore = !!before && before.t === 'name' && !member(list, i - 1);
    if (list[i].v !== '++' && list[i].v !== '--') {
      return plainBefore; // `x = ...`; not `a.b = `, `a[0] = `, `[a] = `, `({a} = ...)`
    }
    // `i++` or `++i`, and neither `a.b++`, `(a.b)++`, `++a.b`, `++a[0]` nor `++(a.b)`.
    if (before && (before.v === ')' || before.v === ']' || (before.t === 'name' && !plainBefore))) {
      return false;
    }
    if (after && after.t === 'punct' && (after.v === '(' || after.v === '[')) {
      return false;
    }
    var next = list[i + 2];
    return !(after && after.t === 'name' && next && next.t === 'punct' && (next.v === '.' || next.v === '[' || next.v === '?.'));
  }

  // Whether the receiver ending at `i` (the token before `.indexOf`) is a string or a list of
  // literals written in the snippet (`['a', 'b'].indexOf(doc.form)`): then no document object
  // can be in it.
  function literalReceiver(list, i) {
    if (!list[i + 1] || list[i + 1].v !== '.' || !list[i]) {
      return false;
    }
    if (list[i].t === 'string') {
      return true;
    }
    if (list[i].v !== ']' || list[i].t !== 'punct') {
      return false;
    }
    for (var k = i - 1; k >= 0; k--) {
      var token = list[k];
      if (token.t === 'punct' && token.v === '[') {
        return !follows(list[k - 1]); // a list, not `x[...]`
      }
      if (!(literal(token) || (token.t === 'punct' && token.v === ','))) {
        return false;
      }
    }
    return false;
  }

  // Where each name is declared: `name -> [scope]`, a scope being the index of the `{` that opens
  // it (-1: the snippet's function). `var` belongs to its function, `let`, `const`, a function's
  // name and `catch (e)` to their block, parameters to their function's body. A declaration the
  // tokenizer cannot place (`var a, b`, a destructured parameter, an arrow without braces) is not
  // recorded, so a write to it is refused.
  function declarations(list, scopes) {
    var found = new Map();
    function add(name, scope) {
      (found.get(name) || found.set(name, []).get(name)).push(scope);
    }
    function bodyAfter(k) { // the `{` after the `)` closing the group opened at `k`
      for (var depth = 0; k < list.length; k++) {
        if (list[k].v === '(' && list[k].t === 'punct') {
          depth++;
        } else if (list[k].v === ')' && list[k].t === 'punct' && --depth === 0) {
          return list[k + 1] && list[k + 1].v === '{' && list[k + 1].t === 'punct' ? k + 1 : null;
        }
      }
      return null;
    }
    function params(open, close, body) { // plain names of the group `(`...`)`: `(a, b = 1, ...c)`
      for (var k = open + 1, depth = 0; k < close; k++) { // `depth`: inside a default's own brackets
        var prev = list[k - 1].v;
        var next = list[k + 1] && list[k + 1].v;
        if (list[k].t === 'punct' && (list[k].v === '(' || list[k].v === '[' || list[k].v === '{')) {
          depth++;
        } else if (list[k].t === 'punct' && (list[k].v === ')' || list[k].v === ']' || list[k].v === '}')) {
          depth--;
        } else if (depth === 0 && list[k].t === 'name' && (prev === '(' || prev === ',' || prev === '...') &&
            (next === ',' || next === ')' || next === '=')) {
          add(list[k].v, body);
        }
      }
    }
    for (var i = 0; i < list.length; i++) {
      var token = list[i];
      var after = list[i + 1];
      var scope = scopes[i];
      if (token.t !== 'name' && token.v !== '=>') {
        continue;
      }
      if ((token.v === 'var' || token.v === 'let' || token.v === 'const') && after && after.t === 'name') {
        add(after.v, token.v === 'var' ? scope.fn : scope.block);
      } else if (token.v === 'function') {
        var open = i + 1;
        if (after && after.t === 'name') {
          add(after.v, scope.block);
          open = i + 2;
        }
        var body = list[open] && list[open].v === '(' ? bodyAfter(open) : null;
        if (body !== null) {
          params(open, body - 1, body);
        }
      } else if (token.v === 'catch' && after && after.v === '(' && list[i + 2] && list[i + 2].t === 'name' &&
          list[i + 3] && list[i + 3].v === ')' && list[i + 4] && list[i + 4].v === '{') {
        add(list[i + 2].v, i + 4);
      } else if (token.v === '=>' && after && after.v === '{' && after.t === 'punct') {
        var before = list[i - 1];
        if (before && before.t === 'name') {
          add(before.v, i + 1);
        } else if (before && before.v === ')') {
          for (var k = i - 1, depth = 0; k >= 0; k--) {
            if (list[k].v === ')') {
              depth++;
            } else if (list[k].v === '(' && --depth === 0) {
              params(k, i - 1, i + 1);
              break;
            }
          }
        }
      }
    }
    return found;
  }

  // For each token, the scopes it is in: `{block, fn, chain}` (see declarations).
  function scopesOf(list) {
    var out = [];
    var stack = [{ id: -1, fn: true }];
    var fnBody = -1; // the index of the next `{` that opens a function's body
    for (var i = 0; i < list.length; i++) {
      var token = list[i];
      if (token.t === 'punct' && token.v === '{') {
        stack.push({ id: i, fn: i === fnBody || (list[i - 1] && list[i - 1].v === '=>') });
      } else if (token.t === 'punct' && token.v === '}' && stack.length > 1) {
        stack.pop();
      }
      if (token.t === 'name' && token.v === 'function') {
        for (var k = i + 1, depth = 0; k < list.length; k++) {
          if (list[k].v === '(') {
            depth++;
          } else if (list[k].v === ')' && --depth === 0) {
            fnBody = k + 1;
            break;
          }
        }
      }
      var fn = -1;
      for (var s = stack.length - 1; s >= 0; s--) {
        if (stack[s].fn) {
          fn = stack[s].id;
          break;
        }
      }
      out.push({ block: stack[stack.length - 1].id, fn: fn, chain: stack.map(function (e) { return e.id; }) });
    }
    return out;
  }

  // The names a variable write at `i` may change: `n = `, `n++`, `++n`, and both for `a\n++b`,
  // which is `a; ++b`.
  function writeTargets(list, i) {
    if (list[i].v !== '++' && list[i].v !== '--') {
      return [list[i - 1].v];
    }
    return [list[i - 1], list[i + 1]].filter(function (token) { return token && token.t === 'name'; })
      .map(function (token) { return token.v; });
  }

  function readOnly(code) {
    code = String(code);
    // V8 reads `<!--` anywhere and `-->` at a line's start as a line comment (Annex B), this
    // tokenizer as operators: it would then skip a `/* ... */` that V8 runs.
    if (code.indexOf('<!--') >= 0 || code.indexOf('-->') >= 0) {
      return false;
    }
    var list = tokens(code);
    if (list === null) {
      return false;
    }
    var scopes = scopesOf(list);
    var declared = declarations(list, scopes);
    var open = []; // the brackets open at this token: `{`, `(`, `[`
    for (var i = 0; i < list.length; i++) {
      var token = list[i];
      var before = list[i - 1];
      var after = list[i + 1];
      if (token.t === 'name' && denied.has(token.v) && (ALWAYS.indexOf(token.v) >= 0 || member(list, i) ||
          KEYWORDS.indexOf(token.v) < 0)) {
        return false; // `return` is a keyword, `it.return` a generator's method
      }
      if (token.t === 'name' && builtins.has(token.v) && KEYWORDS.indexOf(token.v) < 0 &&
          !(after && after.t === 'punct' && (after.v === '(' || (after.v === '.' && !member(list, i) &&
            NAMESPACES.indexOf(token.v) >= 0)))) {
        return false; // `[x].forEach(Array.of, F)`, `.some([a].includes, [a])`, `.map(String)`, `{of: 1}`
      }
      if (token.t === 'name' && token.v === 'new' &&
          !(after && after.v === 'Date' && list[i + 2] && list[i + 2].v === '(')) {
        return false; // only `new Date(...)`
      }
      if (token.t === 'string' && (denied.has(token.v) ||
          (builtins.has(token.v) && after && (after.v === ':' || after.v === '(')))) {
        return false; // `({'push': p}) => ...` takes the method as a parameter
      }
      if (token.t !== 'punct') {
        continue;
      }
      if (token.v === '{' || token.v === '(' || token.v === '[') {
        // A computed key (`{[k]: v}`, also in a parameter's pattern) reads a property named at
        // run time, like `x[k]`.
        if (token.v === '[' && open[open.length - 1] === '{' && before && (before.v === '{' || before.v === ',')) {
          return false;
        }
        open.push(token.v);
      } else if (token.v === '}' || token.v === ')' || token.v === ']') {
        open.pop();
      }
      if (WRITES.indexOf(token.v) >= 0) {
        if (!variableWrite(list, i)) {
          return false;
        }
        // A name the snippet does not declare is a global (sloppy mode), kept for the next document.
        var chain = scopes[i].chain;
        if (!writeTargets(list, i).every(function (name) {
          return (declared.get(name) || []).some(function (scope) { return chain.indexOf(scope) >= 0; });
        })) {
          return false;
        }
      }
      if (EQUALITY.indexOf(token.v) >= 0 && !literal(before) && !literalAt(list, i + 1)) {
        return false;
      }
      if (token.v === '[' && follows(before)) {
        // A computed member: only a literal, and not a denied name.
        if (!literal(after) || !list[i + 2] || list[i + 2].v !== ']' || builtins.has(after.v)) {
          return false;
        }
      }
      if (token.v === '(' && before && before.t === 'name' && COMPARES.indexOf(before.v) >= 0 &&
          !literalAt(list, i + 1) && !literalReceiver(list, i - 3)) {
        return false;
      }
    }
    return true;
  }

  return { readOnly: readOnly };
})();
