// What @libp2p/interop imports from 'aegir/chai': chai with the plugins its
// assertions use (.equalBytes, .exist(), .eventually, ...). The version in
// package.json satisfies @libp2p/interop's peer range on aegir.
import chai from 'chai'
import chaiAsPromised from 'chai-as-promised'
import chaiBites from 'chai-bites'
import chaiParentheses from 'chai-parentheses'
import chaiString from 'chai-string'
import chaiSubset from 'chai-subset'

// chai-as-promised before chai-parentheses: the other order breaks
// `.eventually.be.rejected.with.property(...)` (the suite's NO_RESERVATION
// check): the assertion then runs on the promise, not on its rejection
chai.use(chaiAsPromised)
chai.use(chaiParentheses)
chai.use(chaiBites)
chai.use(chaiString)
chai.use(chaiSubset)

export const expect = chai.expect
export const assert = chai.assert
export { chai }
