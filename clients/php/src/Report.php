<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * What an install reports, before any id is added: the product, what
 * happened (install or update), the versions, and the catalog values it
 * describes itself with. Immutable: every `with…` method returns a copy.
 *
 * ```php
 * $report = Report::update('passbolt', '4.10.1', '4.9.0')
 *     ->withAttribute('edition', 'ce')
 *     ->withCounter('users', 42)
 *     ->withFeature('mfa', true);
 * ```
 *
 * Only names listed in the collector's catalog (`GET /api/v1/catalog`) are
 * stored; the collector ignores others and lists them back.
 */
final class Report
{
    /** The report format version. */
    public const SCHEMA_VERSION = 1;

    /** Longest version string the collector accepts. */
    private const MAX_VERSION_LENGTH = 32;

    /** @var array<string, string> */
    private array $attributes = [];
    /** @var array<string, int> */
    private array $counters = [];
    /** @var array<string, bool> */
    private array $features = [];

    /**
     * @param string      $product         a product of the collector's catalog, such as `passbolt`
     * @param string      $event           `install` or `update`
     * @param string      $version         the version now installed, a plain semantic version such as `4.10.1`
     * @param string|null $previousVersion the version updated from (updates only)
     */
    public function __construct(
        private readonly string $product,
        private readonly string $event,
        private readonly string $version,
        private readonly ?string $previousVersion = null,
    ) {
    }

    /**
     * A report of a new install.
     */
    public static function install(string $product, string $version): self
    {
        return new self($product, 'install', $version);
    }

    /**
     * A report of an update from `$previousVersion` to `$version`.
     */
    public static function update(string $product, string $version, string $previousVersion): self
    {
        return new self($product, 'update', $version, $previousVersion);
    }

    /**
     * A report from an array with the keys of a report (or of the reference
     * client's counts file): `product`, `event`, `version`,
     * `previous_version`, `attributes`, `counters`, `features`.
     *
     * @param array<string, mixed> $data
     *
     * @throws \InvalidArgumentException on a missing key, an unknown key or a value of the wrong type
     */
    public static function fromArray(array $data): self
    {
        $known = ['product', 'event', 'version', 'previous_version', 'attributes', 'counters', 'features'];
        foreach (array_keys($data) as $key) {
            if (!in_array($key, $known, true)) {
                throw new \InvalidArgumentException("unknown report field \"{$key}\" (ids are added by the client)");
            }
        }
        foreach (['product', 'event', 'version'] as $key) {
            if (!is_string($data[$key] ?? null)) {
                throw new \InvalidArgumentException("\"{$key}\" must be a string");
            }
        }
        $previous = $data['previous_version'] ?? null;
        if ($previous !== null && !is_string($previous)) {
            throw new \InvalidArgumentException('"previous_version" must be a string');
        }
        $report = new self($data['product'], $data['event'], $data['version'], $previous);
        foreach (self::section($data, 'attributes') as $name => $value) {
            if (!is_string($value)) {
                throw new \InvalidArgumentException("attributes.{$name} must be a string");
            }
            $report = $report->withAttribute((string) $name, $value);
        }
        foreach (self::section($data, 'counters') as $name => $value) {
            if (!is_int($value)) {
                throw new \InvalidArgumentException("counters.{$name} must be an integer");
            }
            $report = $report->withCounter((string) $name, $value);
        }
        foreach (self::section($data, 'features') as $name => $value) {
            if (!is_bool($value)) {
                throw new \InvalidArgumentException("features.{$name} must be true or false");
            }
            $report = $report->withFeature((string) $name, $value);
        }

        return $report;
    }

    /**
     * @param array<string, mixed> $data
     *
     * @return array<array-key, mixed>
     */
    private static function section(array $data, string $key): array
    {
        $value = $data[$key] ?? [];
        if (!is_array($value)) {
            throw new \InvalidArgumentException("\"{$key}\" must be an array of name => value");
        }

        return $value;
    }

    /**
     * A copy with a catalog attribute set, such as `edition` => `ce`. A
     * value the catalog does not list is stored as `other`.
     */
    public function withAttribute(string $name, string $value): self
    {
        $copy = clone $this;
        $copy->attributes[$name] = $value;

        return $copy;
    }

    /**
     * A copy with a catalog counter set, such as `users` => 42 (from 0 to
     * the catalog's bound).
     */
    public function withCounter(string $name, int $value): self
    {
        $copy = clone $this;
        $copy->counters[$name] = $value;

        return $copy;
    }

    /**
     * A copy with a catalog feature set on or off, such as `mfa` => true.
     */
    public function withFeature(string $name, bool $on): self
    {
        $copy = clone $this;
        $copy->features[$name] = $on;

        return $copy;
    }

    /**
     * The mistakes the collector would refuse the report for, found without
     * asking it: a malformed event or version, a previous version missing
     * from an update or given for an install, a negative counter, a name no
     * catalog can have (names are 1-32 characters of a-z, 0-9 and _). Empty
     * when the report may be sent. Whether a name is in the collector's
     * catalog, and counters' upper bounds, are checked by the collector.
     *
     * @return list<string>
     */
    public function problems(): array
    {
        $problems = [];
        if (!self::isName($this->product)) {
            $problems[] = 'product: must be a catalog product name (1-32 characters of a-z, 0-9 and _)';
        }
        if ($this->event !== 'install' && $this->event !== 'update') {
            $problems[] = 'event: must be "install" or "update"';
        }
        if (!self::isVersion($this->version)) {
            $problems[] = 'version: must be a semantic version such as 4.10.1 or 5.0.0-rc.1 (at most 32 characters; pre-release alpha, beta, rc or dev; no build metadata)';
        }
        if ($this->previousVersion !== null && !self::isVersion($this->previousVersion)) {
            $problems[] = 'previous_version: must be a semantic version such as 4.10.1 or 5.0.0-rc.1 (at most 32 characters; pre-release alpha, beta, rc or dev; no build metadata)';
        }
        if ($this->event === 'update' && $this->previousVersion === null) {
            $problems[] = 'previous_version: an update report must say which version it updated from';
        }
        if ($this->event === 'install' && $this->previousVersion !== null) {
            $problems[] = 'previous_version: an install report has no previous version';
        }
        foreach (['attributes' => $this->attributes, 'counters' => $this->counters, 'features' => $this->features] as $section => $values) {
            foreach (array_keys($values) as $name) {
                if (!self::isName((string) $name)) {
                    $problems[] = "{$section}.{$name}: not a catalog name (1-32 characters of a-z, 0-9 and _)";
                }
            }
        }
        foreach ($this->counters as $name => $value) {
            if ($value < 0) {
                $problems[] = "counters.{$name}: must not be negative";
            }
        }
        foreach ($this->attributes as $name => $value) {
            if (preg_match('//u', $value) !== 1) {
                $problems[] = "attributes.{$name}: must be valid UTF-8";
            }
        }

        return $problems;
    }

    /**
     * Checks the report against a catalog (the collector's
     * `GET /api/v1/catalog`, decoded), as `anonstats send` does before
     * sending: on top of {@see problems()}, a product the catalog does not
     * have, names it does not list for the product (the collector would
     * silently drop them) and counters above their bound are errors;
     * attribute values it does not list are warnings (they are stored as
     * `other`).
     *
     * @param array<string, mixed> $catalog
     */
    public function checkAgainst(array $catalog): CatalogCheck
    {
        $errors = $this->problems();
        $warnings = [];
        $product = $catalog['products'][$this->product] ?? null;
        if (!is_array($product)) {
            $errors[] = 'product: product is not in the catalog (see GET /api/v1/catalog)';

            return new CatalogCheck($errors, $warnings);
        }
        $known = static fn (string $section): array => is_array($product[$section] ?? null) ? $product[$section] : [];
        foreach (['attributes' => $this->attributes, 'counters' => $this->counters, 'features' => $this->features] as $section => $values) {
            foreach (array_keys($values) as $name) {
                if (!array_key_exists((string) $name, $known($section))) {
                    $errors[] = "{$section}.{$name}: not in the catalog of product {$this->product}";
                }
            }
        }
        foreach ($this->counters as $name => $value) {
            $max = $known('counters')[(string) $name]['max'] ?? null;
            if (is_int($max) && $value > $max) {
                $errors[] = "counters.{$name}: must be at most {$max}";
            }
        }
        foreach ($this->attributes as $name => $value) {
            $listed = $known('attributes')[(string) $name]['values'] ?? null;
            if (is_array($listed) && $value !== 'other' && !in_array($value, $listed, true)) {
                $warnings[] = "attributes.{$name}: " . json_encode($value, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE)
                    . ' is not a listed value and will be stored as "other"';
            }
        }

        return new CatalogCheck($errors, $warnings);
    }

    /**
     * The exact request body, as the reference client (`anonstats send`)
     * builds it: indented JSON ending with a newline, fields in a fixed
     * order and names sorted, so that the same report always gives the same
     * bytes. Empty sections and absent ids are left out.
     *
     * @param string      $reportId   this report's random id (lower-case hyphenated UUID)
     * @param string|null $instanceId the install's id from the opt-in file, if any
     *
     * @throws InvalidReportException when the report has {@see problems()} or an id is not a UUID
     */
    public function body(string $reportId, ?string $instanceId): string
    {
        $problems = $this->problems();
        $rid = Uuid::normalize($reportId);
        if ($rid === null) {
            $problems[] = 'report_id: must be a UUID like 7f1c2e9a-3b4d-4c5e-8f60-718293a4b5c6';
        }
        $iid = $instanceId === null ? null : Uuid::normalize($instanceId);
        if ($instanceId !== null && $iid === null) {
            $problems[] = 'instance_id: must be a UUID like 7f1c2e9a-3b4d-4c5e-8f60-718293a4b5c6';
        }
        if ($problems !== []) {
            throw new InvalidReportException($problems);
        }
        $data = ['schema_version' => self::SCHEMA_VERSION, 'report_id' => $rid];
        if ($iid !== null) {
            $data['instance_id'] = $iid;
        }
        $data['product'] = $this->product;
        $data['event'] = $this->event;
        $data['version'] = $this->version;
        if ($this->previousVersion !== null) {
            $data['previous_version'] = $this->previousVersion;
        }
        foreach (['attributes' => $this->attributes, 'counters' => $this->counters, 'features' => $this->features] as $section => $values) {
            if ($values !== []) {
                ksort($values, SORT_STRING);
                $data[$section] = $values;
            }
        }

        return Json::pretty($data) . "\n";
    }

    private static function isName(string $name): bool
    {
        return preg_match('/^[a-z0-9_]{1,32}$/D', $name) === 1;
    }

    /**
     * A semantic version of at most 32 characters, whose pre-release (if
     * any) is alpha, beta, rc or dev, optionally followed by `.N`, and
     * without build metadata, as the collector requires.
     */
    private static function isVersion(string $v): bool
    {
        if (strlen($v) > self::MAX_VERSION_LENGTH) {
            return false;
        }
        $number = '(0|[1-9][0-9]*)';
        if (preg_match("/^{$number}\\.{$number}\\.{$number}(?:-(?:alpha|beta|rc|dev)(?:\\.{$number})?)?$/D", $v, $m) !== 1) {
            return false;
        }
        // Major, minor and patch must fit in 64 bits unsigned.
        foreach ([$m[1], $m[2], $m[3]] as $part) {
            if (strlen($part) > 20 || (strlen($part) === 20 && strcmp($part, '18446744073709551615') > 0)) {
                return false;
            }
        }

        return true;
    }
}
