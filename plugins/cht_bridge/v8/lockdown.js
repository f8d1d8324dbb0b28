// Run once in a new isolate, before the bridge loads: what a snippet could use to reach past its
// own document, or to change what the bridge and the next document see, is removed or frozen.
//
// CHT runs every snippet in a fresh `vm` context that holds `doc` and the JavaScript built-ins. A
// context per document would cost far more than mapping it, so one isolate serves a run; instead:
// - mini-racer's `setTimeout`/`clearTimeout` (built on Atomics.waitAsync), `Atomics`,
//   `SharedArrayBuffer` and `WebAssembly` are gone: no job can outlive its call and blame the next
//   document (a call that times out is also followed by a new isolate);
// - every built-in global is a constant, and built-in constructors, their prototypes and namespaces
//   (JSON, Math, Reflect...) are frozen, so `JSON.stringify = ...` or `Array.prototype.map = ...`
//   does nothing (sloppy snippets, as CHT's, fail silently);
// - Object.prototype takes no new property (a `toJSON` there would change every payload). Its own
//   methods stay writable, since freezing them would refuse documents with a field of that name
//   (`toString`, `constructor`) in strict code; `restore()` puts them back after every call, and
//   removes the globals a snippet created by assigning to an undeclared name.
// The bridge itself keeps no global name at all: Python holds its functions as handles. This
// script's value is `restore`, handed to the bridge the same way.
(function () {
  'use strict';
  setTimeout = undefined;
  clearTimeout = undefined;
  __timer_manager = undefined;
  __TimerManager = undefined;
})();

(function () {
  'use strict';
  var G = globalThis;
  ['Atomics', 'SharedArrayBuffer', 'WebAssembly'].forEach(function (name) { delete G[name]; });
  // RegExp's legacy statics remember the last match of any regex, the bridge's included: one
  // document's text would be readable by the next (`RegExp.input`).
  ['input', '$_', 'lastMatch', '$&', 'lastParen', '$+', 'leftContext', '$`', 'rightContext', "$'",
    '$1', '$2', '$3', '$4', '$5', '$6', '$7', '$8', '$9'].forEach(function (name) { delete RegExp[name]; });
  var OP = Object.prototype;
  var names = Object.getOwnPropertyNames(G);
  names.forEach(function (name) {
    var desc = Object.getOwnPropertyDescriptor(G, name);
    if (!desc.configurable) {
      return; // undefined, NaN, Infinity, and mini-racer's timer vars (now undefined)
    }
    var value = G[name];
    if (value !== G && value !== null && (typeof value === 'object' || typeof value === 'function')) {
      if (typeof value === 'function' && value.prototype && value.prototype !== OP) {
        Object.freeze(value.prototype);
      }
      if (value !== Object) {
        Object.freeze(value);
      }
    }
    Object.defineProperty(G, name, { writable: false, configurable: false });
  });
  Object.freeze(Object);
  Object.freeze(Function.prototype);
  Object.freeze(Object.getPrototypeOf(function* () {}));
  Object.freeze(Object.getPrototypeOf(async function () {}));
  Object.freeze(Object.getPrototypeOf([][Symbol.iterator]()));
  Object.freeze(Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]())));
  Object.freeze(Object.getPrototypeOf(Int8Array));
  Object.freeze(Object.getPrototypeOf(Int8Array.prototype));
  var own = Object.getOwnPropertyNames(OP);
  var saved = own.map(function (name) { return Object.getOwnPropertyDescriptor(OP, name); });
  own.forEach(function (name) { // accessors too (`__proto__`): none can be redefined or deleted
    Object.defineProperty(OP, name, { configurable: false });
  });
  Object.preventExtensions(OP);
  var baseline = new Set(Object.getOwnPropertyNames(G));
  var defineProperty = Object.defineProperty;
  var getOwnPropertyNames = Object.getOwnPropertyNames;

  // After every call into the sandbox: what a snippet changed outside its document is undone.
  function restore() {
    for (var i = 0; i < own.length; i++) {
      if ('value' in saved[i] && OP[own[i]] !== saved[i].value) {
        defineProperty(OP, own[i], { value: saved[i].value });
      }
    }
    var now = getOwnPropertyNames(G);
    if (now.length !== baseline.size) {
      for (var j = 0; j < now.length; j++) {
        if (!baseline.has(now[j])) {
          delete G[now[j]];
        }
      }
    }
  }
  return restore;
})();
