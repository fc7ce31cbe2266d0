// ESM entry: `import pgSession from 'express-pg-session'`. The CommonJS module is the one
// implementation, so `require` and `import` in one app share the same store class.
import expressPgSession from './index.js'

export default expressPgSession
