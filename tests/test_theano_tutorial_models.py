# ruff: noqa: E501, F841  (tutorial code kept as the tutorials write it)
"""Two deeplearning.net tutorial models, condensed, with only the import changed: the LSTM
sentiment model (lstm.py: embeddings, a masked LSTM scan, dropout from MRG streams, adadelta
through two functions) and the RNN-SLU Elman network (rnnslu.py: context windows, a scan with
an output that is not fed back, softmax of a vector indexed as s[:, 0, :], an embedding
normalization function with no inputs).  Each must train on a small synthetic task."""
from collections import OrderedDict

import numpy
import pytest

import tcomp as theano
from tcomp import config, tensor
from tcomp import tensor as T
from tcomp.sandbox.rng_mrg import MRG_RandomStreams as RandomStreams

pytestmark = pytest.mark.slow

SEED = 123
numpy.random.seed(SEED)

def numpy_floatX(data):
    return numpy.asarray(data, dtype=config.floatX)

def _p(pp, name):
    return '%s_%s' % (pp, name)

def ortho_weight(ndim):
    W = numpy.random.randn(ndim, ndim)
    u, s, v = numpy.linalg.svd(W)
    return u.astype(config.floatX)

def init_params(options):
    params = OrderedDict()
    randn = numpy.random.rand(options['n_words'], options['dim_proj'])
    params['Wemb'] = (0.01 * randn).astype(config.floatX)
    params = param_init_lstm(options, params, prefix='lstm')
    params['U'] = 0.01 * numpy.random.randn(options['dim_proj'], options['ydim']).astype(config.floatX)
    params['b'] = numpy.zeros((options['ydim'],)).astype(config.floatX)
    return params

def init_tparams(params):
    tparams = OrderedDict()
    for kk, pp in params.items():
        tparams[kk] = theano.shared(params[kk], name=kk)
    return tparams

def param_init_lstm(options, params, prefix='lstm'):
    W = numpy.concatenate([ortho_weight(options['dim_proj']) for _ in range(4)], axis=1)
    params[_p(prefix, 'W')] = W
    U = numpy.concatenate([ortho_weight(options['dim_proj']) for _ in range(4)], axis=1)
    params[_p(prefix, 'U')] = U
    b = numpy.zeros((4 * options['dim_proj'],))
    params[_p(prefix, 'b')] = b.astype(config.floatX)
    return params

def dropout_layer(state_before, use_noise, trng):
    proj = tensor.switch(use_noise,
                         (state_before * trng.binomial(state_before.shape, p=0.5, n=1, dtype=state_before.dtype)),
                         state_before * 0.5)
    return proj

def lstm_layer(tparams, state_below, options, prefix='lstm', mask=None):
    nsteps = state_below.shape[0]
    if state_below.ndim == 3:
        n_samples = state_below.shape[1]
    else:
        n_samples = 1
    assert mask is not None

    def _slice(_x, n, dim):
        if _x.ndim == 3:
            return _x[:, :, n * dim:(n + 1) * dim]
        return _x[:, n * dim:(n + 1) * dim]

    def _step(m_, x_, h_, c_):
        preact = tensor.dot(h_, tparams[_p(prefix, 'U')])
        preact += x_
        i = tensor.nnet.sigmoid(_slice(preact, 0, options['dim_proj']))
        f = tensor.nnet.sigmoid(_slice(preact, 1, options['dim_proj']))
        o = tensor.nnet.sigmoid(_slice(preact, 2, options['dim_proj']))
        c = tensor.tanh(_slice(preact, 3, options['dim_proj']))
        c = f * c_ + i * c
        c = m_[:, None] * c + (1. - m_)[:, None] * c_
        h = o * tensor.tanh(c)
        h = m_[:, None] * h + (1. - m_)[:, None] * h_
        return h, c

    state_below = (tensor.dot(state_below, tparams[_p(prefix, 'W')]) + tparams[_p(prefix, 'b')])
    dim_proj = options['dim_proj']
    rval, updates = theano.scan(_step,
                                sequences=[mask, state_below],
                                outputs_info=[tensor.alloc(numpy_floatX(0.), n_samples, dim_proj),
                                              tensor.alloc(numpy_floatX(0.), n_samples, dim_proj)],
                                name=_p(prefix, '_layers'),
                                n_steps=nsteps)
    return rval[0]

def adadelta(lr, tparams, grads, x, mask, y, cost):
    zipped_grads = [theano.shared(p.get_value() * numpy_floatX(0.), name='%s_grad' % k) for k, p in tparams.items()]
    running_up2 = [theano.shared(p.get_value() * numpy_floatX(0.), name='%s_rup2' % k) for k, p in tparams.items()]
    running_grads2 = [theano.shared(p.get_value() * numpy_floatX(0.), name='%s_rgrad2' % k) for k, p in tparams.items()]
    zgup = [(zg, g) for zg, g in zip(zipped_grads, grads)]
    rg2up = [(rg2, 0.95 * rg2 + 0.05 * (g ** 2)) for rg2, g in zip(running_grads2, grads)]
    f_grad_shared = theano.function([x, mask, y], cost, updates=zgup + rg2up, name='adadelta_f_grad_shared')
    updir = [-tensor.sqrt(ru2 + 1e-6) / tensor.sqrt(rg2 + 1e-6) * zg
             for zg, ru2, rg2 in zip(zipped_grads, running_up2, running_grads2)]
    ru2up = [(ru2, 0.95 * ru2 + 0.05 * (ud ** 2)) for ru2, ud in zip(running_up2, updir)]
    param_up = [(p, p + ud) for p, ud in zip(tparams.values(), updir)]
    f_update = theano.function([lr], [], updates=ru2up + param_up, on_unused_input='ignore', name='adadelta_f_update')
    return f_grad_shared, f_update

def build_model(tparams, options):
    trng = RandomStreams(SEED)
    use_noise = theano.shared(numpy_floatX(0.))
    x = tensor.matrix('x', dtype='int64')
    mask = tensor.matrix('mask', dtype=config.floatX)
    y = tensor.vector('y', dtype='int64')
    n_timesteps = x.shape[0]
    n_samples = x.shape[1]
    emb = tparams['Wemb'][x.flatten()].reshape([n_timesteps, n_samples, options['dim_proj']])
    proj = lstm_layer(tparams, emb, options, prefix='lstm', mask=mask)
    proj = (proj * mask[:, :, None]).sum(axis=0)
    proj = proj / mask.sum(axis=0)[:, None]
    if options['use_dropout']:
        proj = dropout_layer(proj, use_noise, trng)
    pred = tensor.nnet.softmax(tensor.dot(proj, tparams['U']) + tparams['b'])
    f_pred_prob = theano.function([x, mask], pred, name='f_pred_prob')
    f_pred = theano.function([x, mask], pred.argmax(axis=1), name='f_pred')
    off = 1e-8
    if pred.dtype == 'float16':
        off = 1e-6
    cost = -tensor.log(pred[tensor.arange(n_samples), y] + off).mean()
    return use_noise, x, mask, y, f_pred_prob, f_pred, cost


def _lstm_tutorial():
    options = dict(n_words=50, dim_proj=16, ydim=2, use_dropout=True)
    params = init_params(options)
    tparams = init_tparams(params)
    use_noise, x, mask, y, f_pred_prob, f_pred, cost = build_model(tparams, options)
    decay_c = theano.shared(numpy_floatX(1e-4), name='decay_c')
    weight_decay = (tparams['U'] ** 2).sum() * decay_c
    cost += weight_decay
    f_cost = theano.function([x, mask, y], cost, name='f_cost')
    grads = tensor.grad(cost, wrt=list(tparams.values()))
    f_grad = theano.function([x, mask, y], grads, name='f_grad')
    lr = tensor.scalar(name='lr')
    f_grad_shared, f_update = adadelta(lr, tparams, grads, x, mask, y, cost)
    # task: label = whether token 7 appears in the sequence
    rng = numpy.random.RandomState(0)
    def batch(n=32, T=10):
        xs = rng.randint(0, 50, size=(T, n)).astype('int64')
        lens = rng.randint(3, T + 1, size=n)
        m = (numpy.arange(T)[:, None] < lens[None, :]).astype(config.floatX)
        ys = ((xs == 7) * m).any(axis=0).astype('int64')
        xs[:, :] = numpy.where(m > 0, xs, 0)
        # make the classes balanced: plant a 7 in half the sequences
        plant = rng.rand(n) < 0.5
        xs[0, plant] = 7
        ys = ((xs == 7) * m).any(axis=0).astype('int64')
        return xs, m, ys
    use_noise.set_value(1.)
    first = None
    for it in range(300):
        xs, m, ys = batch()
        c = f_grad_shared(xs, m, ys)
        f_update(0.0001)
        if first is None:
            first = c
    use_noise.set_value(0.)
    xs, m, ys = batch(200)
    acc = (f_pred(xs, m) == ys).mean()
    return first, c, acc


class RNNSLU(object):
    def __init__(self, nh, nc, ne, de, cs):
        self.emb = theano.shared(name='embeddings', value=0.2 * numpy.random.uniform(-1.0, 1.0, (ne+1, de)).astype(theano.config.floatX))
        self.wx = theano.shared(name='wx', value=0.2 * numpy.random.uniform(-1.0, 1.0, (de * cs, nh)).astype(theano.config.floatX))
        self.wh = theano.shared(name='wh', value=0.2 * numpy.random.uniform(-1.0, 1.0, (nh, nh)).astype(theano.config.floatX))
        self.w = theano.shared(name='w', value=0.2 * numpy.random.uniform(-1.0, 1.0, (nh, nc)).astype(theano.config.floatX))
        self.bh = theano.shared(name='bh', value=numpy.zeros(nh, dtype=theano.config.floatX))
        self.b = theano.shared(name='b', value=numpy.zeros(nc, dtype=theano.config.floatX))
        self.h0 = theano.shared(name='h0', value=numpy.zeros(nh, dtype=theano.config.floatX))
        self.params = [self.emb, self.wx, self.wh, self.w, self.bh, self.b, self.h0]
        idxs = T.imatrix()
        x = self.emb[idxs].reshape((idxs.shape[0], de*cs))
        y_sentence = T.ivector('y_sentence')
        def recurrence(x_t, h_tm1):
            h_t = T.nnet.sigmoid(T.dot(x_t, self.wx) + T.dot(h_tm1, self.wh) + self.bh)
            s_t = T.nnet.softmax(T.dot(h_t, self.w) + self.b)
            return [h_t, s_t]
        [h, s], _ = theano.scan(fn=recurrence, sequences=x, outputs_info=[self.h0, None], n_steps=x.shape[0])
        p_y_given_x_sentence = s[:, 0, :]
        y_pred = T.argmax(p_y_given_x_sentence, axis=1)
        lr = T.scalar('lr')
        sentence_nll = -T.mean(T.log(p_y_given_x_sentence)[T.arange(x.shape[0]), y_sentence])
        sentence_gradients = T.grad(sentence_nll, self.params)
        sentence_updates = OrderedDict((p, p - lr*g) for p, g in zip(self.params, sentence_gradients))
        self.classify = theano.function(inputs=[idxs], outputs=y_pred)
        self.sentence_train = theano.function(inputs=[idxs, y_sentence, lr], outputs=sentence_nll, updates=sentence_updates)
        self.normalize = theano.function(inputs=[], updates={self.emb: self.emb / T.sqrt((self.emb**2).sum(axis=1)).dimshuffle(0, 'x')})

def contextwin(l, win):
    lpadded = win // 2 * [-1] + l + win // 2 * [-1]
    out = [lpadded[i:(i + win)] for i in range(len(l))]
    return out


def _rnnslu_tutorial():
    numpy.random.seed(0)
    rnn = RNNSLU(nh=20, nc=3, ne=30, de=10, cs=3)
    # label = 1 if word is < 10, 2 if the previous word was < 10, else 0
    def sent():
        w = numpy.random.randint(0, 30, size=numpy.random.randint(4, 12)).tolist()
        y = [1 if a < 10 else (2 if i > 0 and w[i-1] < 10 else 0) for i, a in enumerate(w)]
        return w, y
    first = None
    means = []
    for ep in range(3):
        tot = 0
        for k in range(300):
            w, y = sent()
            nll = rnn.sentence_train(numpy.asarray(contextwin(w, 3)).astype('int32'), numpy.asarray(y, 'int32'), 0.1)
            rnn.normalize()
            tot += nll
        means.append(tot / 300)
    acc = []
    for k in range(100):
        w, y = sent()
        acc.append((rnn.classify(numpy.asarray(contextwin(w, 3)).astype('int32')) == y).mean())
    return means, numpy.mean(acc)


def test_lstm_tutorial_learns_to_detect_a_token():
    first, last, accuracy = _lstm_tutorial()
    assert last < 0.5 * first
    assert accuracy > 0.8


def test_rnnslu_tutorial_learns_the_labels():
    means, accuracy = _rnnslu_tutorial()
    assert means[-1] < 0.5 * means[0]
    assert accuracy > 0.8
