<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * Where to send, and how long sending may take. Immutable.
 *
 * The defaults are the reference client's (`anonstats send`): requests of
 * at most 10 s, 4 retries waiting 0.5 s, 1 s, 2 s, 4 s (with jitter) or what
 * the collector's `Retry-After` asks for, up to 30 s. On top of that, one
 * call never takes longer than `$budget` seconds in total: each attempt's
 * connect and request timeouts are cut to what is left of it, and a retry
 * that would not fit is not made.
 */
final class Options
{
    /**
     * @param string|null   $collector      collector base URL; null uses the opt-in file's
     *                                      `collector`, else {@see Client::DEFAULT_COLLECTOR}
     * @param float         $budget         seconds one send() or forget() may take in all
     * @param float         $requestTimeout seconds one attempt may take, connecting included
     * @param int           $retries        retries after the first attempt (network errors,
     *                                      429, 502, 503, 504)
     * @param float         $baseDelay      wait before the first retry; doubles with each retry
     * @param float         $maxDelay       longest wait between two attempts; a `Retry-After`
     *                                      asking for more ends the retries
     * @param \Closure|null $logger         called with one line per notable event
     *                                      (`fn (string $line): void`), e.g. a PSR-3 logger's
     *                                      `$logger->warning(...)`; null logs nothing
     * @param bool          $checkCatalog   whether send() first fetches the collector's catalog
     *                                      and refuses, as `anonstats send` does, a report with
     *                                      names it does not list (one more request, within the
     *                                      same budget; no report when the catalog cannot be had)
     *
     * @throws \InvalidArgumentException on a negative or zero duration, or negative retries
     */
    public function __construct(
        public readonly ?string $collector = null,
        public readonly float $budget = 15.0,
        public readonly float $requestTimeout = 10.0,
        public readonly int $retries = 4,
        public readonly float $baseDelay = 0.5,
        public readonly float $maxDelay = 30.0,
        public readonly ?\Closure $logger = null,
        public readonly bool $checkCatalog = false,
    ) {
        if ($budget <= 0 || $requestTimeout <= 0) {
            throw new \InvalidArgumentException('budget and requestTimeout must be positive');
        }
        if ($retries < 0 || $baseDelay < 0 || $maxDelay < 0) {
            throw new \InvalidArgumentException('retries, baseDelay and maxDelay must not be negative');
        }
    }

    /**
     * A copy with another time budget, in seconds.
     *
     * @throws \InvalidArgumentException when it is not positive
     */
    public function withBudget(float $budget): self
    {
        return new self($this->collector, $budget, $this->requestTimeout, $this->retries, $this->baseDelay, $this->maxDelay, $this->logger, $this->checkCatalog);
    }
}
