// @ts-check
'use strict'

// express-pg-session/koa: `require('express-pg-session/koa')(options)` returns a koa-session 7
// external store on the same engine and table format as the Express store (lib/koa.js).

const { NativeStore } = require('./lib/native')()

module.exports = require('./lib/koa')(NativeStore)
