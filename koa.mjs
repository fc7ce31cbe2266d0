// ESM entry of express-pg-session/koa: `import koaStore from 'express-pg-session/koa'`. The
// CommonJS module is the one implementation.
import koaStore from './koa.js'

export default koaStore
